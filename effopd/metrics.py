"""avg@n and the unbiased pass@k estimator (SPEC section 5).

For a problem with ``n`` samples of which ``c`` are correct, the probability that at
least one of ``k`` samples drawn without replacement is correct is

    pass@k = 1 - C(n - c, k) / C(n, k)

(Chen et al. 2021, "Evaluating Large Language Models Trained on Code"). A benchmark's
pass@k is the mean over problems; avg@n is the mean correctness over all samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 - C(n-c, k) / C(n, k) for ``c`` correct out of ``n`` samples.

    Computed in the product form of Chen et al. (2021), which never forms a binomial:

        C(n-c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)

    and equals 0 (so pass@k = 1) when ``n - c < k``. ``pass_at_k(n, c, 1) == c / n``.
    """
    if n < 0 or c < 0 or k < 1:
        raise ValueError(f"need n >= 0, c >= 0 and k >= 1, got n={n}, c={c}, k={k}")
    if c > n or k > n:
        raise ValueError(f"need c <= n and k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    ratio = 1.0
    for i in range(n - c + 1, n + 1):
        ratio *= 1.0 - k / i
    return 1.0 - ratio


def summarize_grades(grades: pd.DataFrame, ks: list[int],
                     statuses: tuple[str, ...] = ("timeout", "error", "no_answer"),
                     ) -> dict[str, Any]:
    """Summarise graded samples, one row each with ``problem_id``, ``correct``, ``status``.

    Every problem must have the same number of samples ``n``. Returns ``n_problems``,
    ``n_samples_per_problem``, ``avg@n`` (mean of ``correct`` over all samples),
    ``pass@k`` for each ``k <= n`` (mean over problems of :func:`pass_at_k`; larger ``k``
    are skipped) and a count ``n_<status>`` for each of ``statuses`` (math grading's
    failure statuses by default; the code grader passes its own).
    """
    missing = {"problem_id", "correct", "status"} - set(grades.columns)
    if missing:
        raise ValueError(f"grades lack column(s) {sorted(missing)} (have {list(grades.columns)})")
    if grades.empty:
        raise ValueError("grades is empty")
    if grades["correct"].isna().any():
        raise ValueError("grades has missing values in 'correct'")
    per_problem = grades.groupby("problem_id", sort=True)["correct"].agg(["size", "sum"])
    n = int(per_problem["size"].iloc[0])
    uneven = per_problem[per_problem["size"] != n]
    if not uneven.empty:
        raise ValueError(f"problem {uneven.index[0]!r} has {int(uneven['size'].iloc[0])} samples, "
                         f"problem {per_problem.index[0]!r} has {n}: n must be equal")
    status_counts = grades["status"].value_counts()
    summary: dict[str, Any] = {
        "n_problems": len(per_problem),
        "n_samples_per_problem": n,
        "avg@n": float(grades["correct"].astype(bool).mean()),
    }
    for k in sorted(set(ks)):
        if k <= n:
            summary[f"pass@{k}"] = float(sum(pass_at_k(n, int(c), k) for c in per_problem["sum"])
                                         / len(per_problem))
    for status in statuses:
        summary[f"n_{status}"] = int(status_counts.get(status, 0))
    return summary


def problems_csv(eval_csv: str | Path) -> Path:
    """The per-problem file beside a run's evaluate-series CSV: ``<stem>.problems.csv``
    (step, n, then each problem's number of correct samples)."""
    path = Path(eval_csv)
    return path.with_name(path.stem + ".problems.csv")

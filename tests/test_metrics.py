"""avg@n and pass@k: the estimator against brute-force enumeration, and the summary."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest

from effopd.metrics import pass_at_k, summarize_grades


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_1_is_the_fraction_correct() -> None:
    for n, c in [(1, 0), (1, 1), (32, 0), (32, 5), (32, 32), (7, 3)]:
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-15)


def test_pass_at_k_exact_values_and_edges() -> None:
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(32, 0, 32) == 0.0
    assert pass_at_k(32, 1, 32) == 1.0
    assert pass_at_k(32, 31, 2) == 1.0  # n - c < k
    # large n stays finite where the binomials overflow a float
    exact = 1 - math.comb(1997, 1000) / math.comb(2000, 1000)
    assert pass_at_k(2000, 3, 1000) == pytest.approx(exact)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, 1, 5), (-1, 0, 1), (4, -1, 1), (4, 1, 0)])
def test_pass_at_k_rejects_bad_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def grades_frame() -> pd.DataFrame:
    # problem a: 2 of 4 correct; problem b: 0 of 4 (one timeout, one no_answer)
    return pd.DataFrame({
        "problem_id": ["a"] * 4 + ["b"] * 4,
        "correct": [True, False, True, False, False, False, False, False],
        "status": ["ok", "ok", "ok", "ok", "timeout", "no_answer", "ok", "error"],
    })


def test_summarize_grades() -> None:
    summary = summarize_grades(grades_frame(), ks=[1, 2, 4, 8])
    assert summary == {
        "n_problems": 2,
        "n_samples_per_problem": 4,
        "avg@n": pytest.approx(2 / 8),
        "pass@1": pytest.approx((2 / 4 + 0) / 2),
        "pass@2": pytest.approx((1 - 1 / 6 + 0) / 2),  # 1 - C(2,2)/C(4,2) for problem a
        "pass@4": pytest.approx((1 + 0) / 2),
        "n_timeout": 1,
        "n_error": 1,
        "n_no_answer": 1,
    }


def test_summarize_grades_rejects_uneven_n() -> None:
    frame = grades_frame().iloc[:-1]
    with pytest.raises(ValueError, match="problem 'b' has 3 samples"):
        summarize_grades(frame, ks=[1])


def test_summarize_grades_rejects_missing_columns_and_empty() -> None:
    with pytest.raises(ValueError, match="status"):
        summarize_grades(grades_frame().drop(columns="status"), ks=[1])
    with pytest.raises(ValueError, match="empty"):
        summarize_grades(grades_frame().iloc[:0], ks=[1])

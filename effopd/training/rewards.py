"""The 0/1 reward of a response, the same contract for every task: math-verify for a
problem with an ``answer`` (:func:`effopd.grading.grade_records`, the last ``\\boxed{}``,
gold first), the sandbox for a problem with hidden ``test`` source
(:func:`effopd.code_grading.grade_programs_batched`: correct = every test passed).

Both are bounded and parallel: ``workers`` processes (math) or sandbox runs (code) at a
time, each killed at ``timeout_s`` (a code batch at ``timeout_s`` per program), so a
reward never hangs a training step. The RL reward, the batch accuracy every method
logs and EffOPD's validation score all come from :func:`correct`.
"""

from __future__ import annotations

from typing import Any

from effopd.code_grading import Limits, grade_programs_batched
from effopd.grading import grade_records


def is_code_problem(row: dict[str, Any]) -> bool:
    """Whether a problem row is graded by running its hidden tests (it has ``test``)."""
    return isinstance(row.get("test"), str)


def correct(texts: list[str], rows: list[dict[str, Any]], timeout_s: float, workers: int,
            batch_size: int = 64) -> list[bool]:
    """Whether each response ``texts[i]`` solves problem ``rows[i]`` (see the module
    docstring). A problem row has ``test`` (and optionally ``entry_point``) or
    ``answer``."""
    if len(texts) != len(rows):
        raise ValueError(f"{len(texts)} responses for {len(rows)} problems")
    code = [i for i, row in enumerate(rows) if is_code_problem(row)]
    math = [i for i, row in enumerate(rows) if not is_code_problem(row)]
    result = [False] * len(texts)
    if code:
        graded = grade_programs_batched(
            [{"response": texts[i], "test": rows[i]["test"],
              **({"entry_point": rows[i]["entry_point"]} if rows[i].get("entry_point")
                 else {})} for i in code],
            Limits(timeout_s=timeout_s), workers=workers, batch_size=batch_size)
        for i, row in zip(code, graded, strict=True):
            result[i] = row["status"] == "passed"
    if math:
        graded = grade_records([{"gold": str(rows[i]["answer"]), "response": texts[i]}
                                for i in math], timeout_s=timeout_s, workers=workers,
                               progress=False)
        for i, row in zip(math, graded, strict=True):
            result[i] = bool(row["correct"])
    return result

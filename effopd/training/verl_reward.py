"""verl custom reward function: 1.0 when math-verify judges the last \\boxed{} correct."""

from __future__ import annotations

from typing import Any


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: dict[str, Any] | None = None) -> float:
    """verl's ``custom_reward_function`` signature; grades with a hard timeout."""
    from effopd.grading import grade_records

    graded = grade_records([{"gold": ground_truth, "response": solution_str}], timeout_s=10.0,
                           workers=1, progress=False)
    return 1.0 if graded[0]["correct"] else 0.0

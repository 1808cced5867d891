"""A test reward for verl's GRPO on the tiny student: the fraction of digits in a response.

The tiny student never solves a problem (its math-verify reward is always 0), so every
group would have zero advantages and the update a zero gradient. This reward differs
between the samples of a group, so GRPO's group-normalised advantages are non-zero.
Same signature as effopd.integrations.verl_reward.compute_score (verl's custom reward).
"""

from __future__ import annotations

from typing import Any


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: dict[str, Any] | None = None) -> float:
    """Digits / characters of ``solution_str`` (0 for an empty response)."""
    if not solution_str:
        return 0.0
    return sum(char.isdigit() for char in solution_str) / len(solution_str)

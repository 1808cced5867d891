"""Defaults of the checkpoint-series analyses and the checkpoint series itself.

Torch-free on purpose: the command line reads these defaults when it builds
its parser, and the table code reads :class:`Series`, without importing the
numerical stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SPECTRA_KS = (1, 2, 4, 8, 16, 32, 64)
ALIGNMENT_KS = (1, 2, 4, 8, 16)
SCALING_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
EARLY_FRACTION = 0.1
WINDOW_SIZE = 4
WINDOW_STRIDE = 2
RANK_KS = (1, 4, 16)
EVAL_LIMIT = 64
EVAL_N = 1


@dataclass(frozen=True)
class Series:
    """A base model and its checkpoints in training order; the last one is the final update.

    ``steps`` are None where unknown; ``fraction`` is step / final step.
    """

    base: Path
    labels: list[str]
    paths: list[Path]
    steps: list[int | None]

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("a series needs at least one checkpoint")
        if not len(self.labels) == len(self.paths) == len(self.steps):
            raise ValueError("labels, paths and steps differ in length")

    @property
    def final(self) -> Path:
        return self.paths[-1]

    @property
    def final_step(self) -> int | None:
        return self.steps[-1]

    def fraction(self, step: int | None) -> float:
        if step is None or not self.final_step:
            return math.nan
        return step / self.final_step

    def info(self, index: int) -> dict[str, Any]:
        """checkpoint, step and fraction of checkpoint ``index`` (step NaN-able)."""
        step = self.steps[index]
        return {"checkpoint": self.labels[index],
                "step": pd.NA if step is None else step, "fraction": self.fraction(step)}

    def early_index(self, fraction: float) -> int:
        """The checkpoint whose training fraction is closest to ``fraction`` (ties: the earlier).

        The final checkpoint is chosen only when it is the only one. Without
        steps, position in the series stands in for the step.
        """
        if len(self.paths) == 1:
            return 0
        known = all(step is not None for step in self.steps) and self.final_step
        positions = [self.fraction(s) if known else (i + 1) / len(self.paths)
                     for i, s in enumerate(self.steps)]
        candidates = range(len(self.paths) - 1)
        return min(candidates, key=lambda i: (abs(positions[i] - fraction), i))

"""The checkpoint series: a base model and its checkpoints in training order.

Discovery (a run's ``checkpoints.csv``, or checkpoint directories with steps
parsed from their paths), the early checkpoint's choice, and verification of
every file before any analysis reads it. Torch-free: the tables above read
:func:`early_index` without importing the numerical stack.

Steps of a checkpoint directory are parsed from its path (``step_000050``,
``global_step_50/actor/huggingface``, ``checkpoint-50``) unless given.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.tables import CHECKPOINT_INDEX, read_table, run_identity

PathLike = str | os.PathLike[str]

@dataclass(frozen=True)
class Series:
    """A base model and its checkpoints in training order; the last one is the final update.

    ``steps`` are None where unknown; ``fraction`` is step / final step. ``run``: the
    training run's identity (method, seed) that every table of the series carries
    (:func:`effopd.tables.with_run`); empty when the checkpoints were given without one.
    """

    base: Path
    labels: list[str]
    paths: list[Path]
    steps: list[int | None]
    run: dict[str, Any] = field(default_factory=dict)

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
        """The early checkpoint's position: :func:`early_index` of the steps."""
        return early_index(self.steps, fraction)


def early_index(steps: Sequence[int | None], fraction: float) -> int:
    """The position of the checkpoint whose training fraction (step / last step) is
    closest to ``fraction`` (ties: the earlier).

    The last checkpoint is chosen only when it is the only one. When a step is
    unknown (None), position in the series stands in for the step.
    """
    if len(steps) == 1:
        return 0
    final = steps[-1]
    known = all(step is not None for step in steps) and final
    positions = [s / final if known else (i + 1) / len(steps) for i, s in enumerate(steps)]
    candidates = range(len(steps) - 1)
    return min(candidates, key=lambda i: (abs(positions[i] - fraction), i))


_STEP_RE = re.compile(r"^(?:global_step|step|checkpoint|ckpt|iter)[_-]?(\d+)$", re.IGNORECASE)


def parse_step(path: PathLike) -> int | None:
    """The training step a checkpoint path names, or None.

    Reads the innermost path component of the form ``step_000050``,
    ``global_step_50`` (verl; ``global_step_50/actor/huggingface`` works),
    ``checkpoint-50`` (TRL), ``ckpt50`` or ``iter_50``.
    """
    for part in reversed(Path(path).parts):
        match = _STEP_RE.match(part)
        if match:
            return int(match.group(1))
    return None


def unique_labels(paths: Sequence[PathLike]) -> list[str]:
    """Label checkpoints by directory name, or by the shortest distinct path tail.

    ``a/global_step_5/actor/huggingface`` and ``a/global_step_9/actor/huggingface``
    become ``global_step_5/actor/huggingface`` and ``global_step_9/...``.
    """
    parts = [Path(p).resolve().parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    raise ValueError("checkpoint paths are not distinct")


def series_from_index(index_csv: PathLike, base: PathLike) -> Series:
    """The series of a training run's ``checkpoints.csv`` (columns method, seed, step, path;
    paths as written), with the run's identity from the index."""
    index = read_table(index_csv, CHECKPOINT_INDEX).sort_values("step")
    method, seed = run_identity(index, index_csv)
    paths = [Path(p) for p in index["path"]]
    return Series(Path(base), unique_labels(paths), paths, [int(s) for s in index["step"]],
                  {"method": method, "seed": seed})


def series_from_dirs(base: PathLike, checkpoints: Sequence[PathLike],
                     labels: Sequence[str] | None = None, steps: Sequence[int] | None = None,
                     final: PathLike | None = None) -> Series:
    """A series from checkpoint directories.

    ``steps`` default to those parsed from the paths (:func:`parse_step`). When
    every step is known the checkpoints are sorted by step, else they keep the
    order given. ``final`` (default: the last one) is appended when it is not
    among ``checkpoints``, and moved to the end when it is.
    """
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("no checkpoints given")
    labels = list(labels) if labels else unique_labels(paths)
    step_list = list(steps) if steps else [parse_step(p) for p in paths]
    if len(labels) != len(paths) or len(step_list) != len(paths):
        raise ValueError(f"{len(paths)} checkpoints but {len(labels)} labels and "
                         f"{len(step_list)} steps")
    entries = list(zip(labels, paths, step_list, strict=True))
    if all(step is not None for _, _, step in entries):
        entries.sort(key=lambda entry: entry[2])
    if final is not None:
        final_path = Path(final).resolve()
        chosen = [e for e in entries if e[1].resolve() == final_path]
        entries = [e for e in entries if e[1].resolve() != final_path]
        entries.append(chosen[0] if chosen else ("final", Path(final), parse_step(final)))
    labels_out, paths_out, steps_out = (list(column) for column in zip(*entries, strict=True))
    if len(set(labels_out)) != len(labels_out):
        raise ValueError(f"checkpoint labels are not unique: {labels_out}")
    return Series(Path(base), labels_out, paths_out, steps_out)


def verify_series(series: Series, sha256: bool = False) -> None:
    """Verify the base and every checkpoint before any analysis reads them: every file
    a manifest lists has its recorded size (and, ``sha256``, its sha256), and every
    safetensors file is sound; ``CheckpointError`` names the file otherwise."""
    from effopd.models.checkpoint import verify_checkpoint

    for path in [series.base, *series.paths]:
        verify_checkpoint(path, sha256=sha256)

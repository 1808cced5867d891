"""Runs and their names: the files of one training run, joined on the run's identity
(the ``method`` and ``seed`` columns its producers write, :data:`effopd.tables.RUN_KEY`).
How tables and figures name a method is its declaration's label
(:func:`effopd.methods.method_label`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from effopd.tables import EVAL_SERIES, TRAIN_LOG, join_runs, runs_by_key


@dataclass(frozen=True)
class RunFiles:
    """One training run's evaluation series (``evaluate-series``; its per-problem counts
    lie beside it) and training log, read and validated."""

    method: str
    seed: int
    eval_csv: Path
    scores: pd.DataFrame
    log_csv: Path
    log: pd.DataFrame


def paired_runs(eval_csvs: Sequence[str | Path], log_csvs: Sequence[str | Path]
                ) -> list[RunFiles]:
    """Each run's evaluation series joined with its training log on (method, seed), in the
    order of ``eval_csvs``. Refused, naming the files, when a run has two files of one kind
    or lacks one of the two (the lists' order does not matter)."""
    evals = runs_by_key(eval_csvs, EVAL_SERIES)
    logs = runs_by_key(log_csvs, TRAIN_LOG)
    keys = join_runs(evals, logs, "the evaluation series", "the training logs")
    return [RunFiles(method, seed, *evals[(method, seed)], *logs[(method, seed)])
            for method, seed in keys]

"""The step-size map: where EffOPD's extrapolation helps, and whether it beats OPD at its
best learning rate (issue 31; SPEC section 1, claim 5 and the referee's baseline).

Terms, each one function below:

- **Cell**: one declared method (:mod:`effopd.methods`) of algorithm OPD or EffOPD,
  trained on several seeds; its **learning rate** is the peak of its training logs' ``lr``
  column (what the runs trained with, not what a name says), and every run of a cell
  must agree on it (:func:`cells`). Ablation variants are not cells (they change the
  search, not the step).
- **Final accuracy**: the grand mean over seeds and problems of the per-problem correct
  rate at the last common step, seeds and problems crossed random effects
  (:func:`effopd.reports.stats.crossed_mean`: training noise, the problems' spread and
  the sampling noise each counted once), with its t interval (:func:`final_accuracy`).
- **Searches**, **accepted**: EffOPD's line searches over all seeds (one per (seed,
  step) of its search logs) and those that moved the weights (an accepted candidate
  beyond the plain step, multiplier > 1) (:func:`search_counts`).
- **Time-scale speed-up at the horizon**: for an EffOPD cell, the factor s with which
  EffOPD's curve at x equals the reference's at s x, per seed pair, geometric mean and
  t interval over pairs (:func:`effopd.reports.speedup.estimate`, the suite's one
  estimator), against OPD at the same learning rate (``timescale_steps``) and against
  OPD at its best learning rate over the whole map (``vs_best_lr_steps``). The horizon
  is the common grid's last step.
- **Best learning rate**: of the OPD cells, the one with the largest mean accuracy over
  training time (:func:`effopd.reports.speedup.best_lr_method`); it is chosen on the
  same runs it is compared on, so EffOPD's speed-up against it is conservative.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from effopd.config import block_defaults
from effopd.methods import EFFOPD, OPD, Method, method_label
from effopd.reports.runs import paired_runs
from effopd.reports.speedup import (
    Run,
    best_lr_method,
    common_grid,
    estimate,
    estimate_settings,
    format_lr,
    format_number,
    run_from_files,
)
from effopd.reports.stats import crossed_mean, t_interval
from effopd.tables import TableSchema, read_table, runs_by_key

MAP_ALGORITHMS = (OPD, EFFOPD)
SEARCH_LOG = TableSchema({"method": "text", "seed": "count", "step": "step",
                          "multiplier": "number"},
                         ("method", "seed", "step", "multiplier", "accepted"), per_run=True)
COLUMNS = ["algorithm", "lr", "method", "label", "seeds", "searches", "accepted",
           "final_step", "final_acc", "final_acc_low", "final_acc_high", "best_lr",
           "reference", "timescale_steps", "timescale_steps_low", "timescale_steps_high",
           "vs_best_lr_method", "vs_best_lr_steps", "vs_best_lr_steps_low",
           "vs_best_lr_steps_high"]


def cells(runs: Sequence[Run], logs: Mapping[tuple[str, int], pd.DataFrame],
          methods: Mapping[str, Method]) -> dict[str, tuple[str, float]]:
    """The map's cells: method -> (algorithm, learning rate), in the order of ``methods``,
    for the declared OPD and EffOPD methods (not ablation variants) that have runs. The
    learning rate is the peak of the runs' logged ``lr``; runs of one method that
    disagree on it are refused."""
    present = {r.method for r in runs}
    found = {}
    for name, method in methods.items():
        if name not in present or method.algorithm.name not in MAP_ALGORITHMS \
                or method.role == "variant":
            continue
        peaks = {float(log["lr"].max()) for (m, _), log in logs.items() if m == name}
        if len(peaks) != 1:
            raise ValueError(f"step-size map: the runs of {name} logged different peak "
                             f"learning rates {sorted(peaks)}")
        found[name] = (method.algorithm.name, peaks.pop())
    return found


def final_accuracy(runs: Sequence[Run], grid: np.ndarray,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the accuracy at the grid's last step: the grand mean of the
    per-problem rates over seeds x problems, crossed random effects, t interval."""
    final = np.stack([run.on_grid(grid).rates[-1] for run in runs])
    mean, se, df = crossed_mean(final)
    low, high = t_interval(mean, se, df, confidence)
    return mean, low, high


def search_counts(search: pd.DataFrame | None) -> tuple[int, int]:
    """(searches, accepted) of one cell's search logs: one search per (seed, step); it
    is accepted when a candidate beyond the plain step (multiplier > 1) was accepted."""
    if search is None or search.empty:
        return 0, 0
    by_search = search.groupby(["seed", "step"])
    moved = by_search.apply(
        lambda rows: bool(((rows["multiplier"] > 1) & rows["accepted"].astype(bool)).any()),
        include_groups=False)
    return int(len(moved)), int(moved.sum())


def timescale(pairs: list[tuple[Run, Run]], settings: dict[str, Any]
              ) -> tuple[float, float, float]:
    """(estimate, low, high) of the time-scale speed-up in steps over seed ``pairs``
    (reference, treatment), by :func:`effopd.reports.speedup.estimate`; NaN without pairs."""
    if not pairs:
        return math.nan, math.nan, math.nan
    summary = estimate(pairs, **estimate_settings(settings)).summary
    return (summary["timescale_steps"], summary["timescale_steps_ci95_low"],
            summary["timescale_steps_ci95_high"])


def stepsize_map(runs: Sequence[Run], logs: Mapping[tuple[str, int], pd.DataFrame],
                 searches: Mapping[str, pd.DataFrame], methods: Mapping[str, Method],
                 speedup: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per cell (module docstring), OPD's cells first, each algorithm by
    increasing learning rate: :data:`COLUMNS`."""
    settings = block_defaults("speedup", speedup)
    found = cells(runs, logs, methods)
    by_method = {name: sorted((r for r in runs if r.method == name), key=lambda r: r.seed)
                 for name in found}
    grid = common_grid([r for rs in by_method.values() for r in rs])
    opd_cells = [name for name, (algorithm, _) in found.items() if algorithm == OPD]
    best = best_lr_method([r for name in opd_cells for r in by_method[name]], opd_cells) \
        if opd_cells else None
    rows = []
    for name, (algorithm, lr) in sorted(found.items(),
                                        key=lambda item: (MAP_ALGORITHMS.index(item[1][0]),
                                                          item[1][1])):
        mine = by_method[name]
        mean, low, high = final_accuracy(mine, grid, settings["confidence"])
        n_searches, accepted = search_counts(searches.get(name))
        row = {"algorithm": algorithm, "lr": lr, "method": name,
               "label": method_label(name, methods), "seeds": len(mine),
               "searches": n_searches, "accepted": accepted, "final_step": int(grid[-1]),
               "final_acc": mean, "final_acc_low": low, "final_acc_high": high,
               "best_lr": name == best}
        if algorithm == EFFOPD:
            same = [m for m in opd_cells if math.isclose(found[m][1], lr, rel_tol=1e-9)]
            reference = same[0] if same else None
            row["reference"] = reference or ""
            row["timescale_steps"], row["timescale_steps_low"], row["timescale_steps_high"] = \
                timescale(_pairs(by_method.get(reference, []), mine), settings)
            row["vs_best_lr_method"] = best or ""
            row["vs_best_lr_steps"], row["vs_best_lr_steps_low"], \
                row["vs_best_lr_steps_high"] = timescale(_pairs(by_method.get(best, []), mine),
                                                         settings)
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _pairs(reference: Sequence[Run], treatment: Sequence[Run]) -> list[tuple[Run, Run]]:
    """(reference, treatment) runs of the same seed."""
    by_seed = {r.seed: r for r in reference}
    return [(by_seed[t.seed], t) for t in treatment if t.seed in by_seed]


def stepsize_markdown(table: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view: one line per cell, intervals inline."""
    def interval(row: pd.Series, column: str, low: str, high: str) -> str:
        if pd.isna(row.get(column)):
            return ""
        return (f"{format_number(row[column])} [{format_number(row[low])}, "
                f"{format_number(row[high])}]")

    return pd.DataFrame({
        "method": table["label"],
        "lr": table["lr"].map(format_lr),
        "seeds": table["seeds"],
        "searches accepted": [f"{a} / {s}" if s else "" for a, s in
                              zip(table["accepted"], table["searches"], strict=True)],
        "final acc [95% CI]": [interval(r, "final_acc", "final_acc_low", "final_acc_high")
                               + (" (best OPD lr)" if r["best_lr"] else "")
                               for _, r in table.iterrows()],
        "time-scale vs OPD same lr": [interval(r, "timescale_steps", "timescale_steps_low",
                                               "timescale_steps_high")
                                      for _, r in table.iterrows()],
        "time-scale vs OPD best lr": [interval(r, "vs_best_lr_steps", "vs_best_lr_steps_low",
                                               "vs_best_lr_steps_high")
                                      for _, r in table.iterrows()],
    })


def write_stepsize_map(eval_csvs: list[str | Path], log_csvs: list[str | Path],
                       search_csvs: list[str | Path], methods: Mapping[str, Method],
                       out_csv: str | Path, speedup: dict[str, Any] | None = None
                       ) -> pd.DataFrame:
    """Write stepsize_map.csv (:data:`COLUMNS`) and its Markdown view beside it."""
    from effopd.io import atomic_path, atomic_write_text, markdown_table

    files = paired_runs(eval_csvs, log_csvs)
    runs = [run_from_files(f) for f in files]
    logs = {(f.method, f.seed): f.log for f in files}
    searches: dict[str, list[pd.DataFrame]] = {}
    logged = [p for p in search_csvs if len(Path(p).read_text().splitlines()) > 1]
    for (method, _), (_, frame) in runs_by_key(logged, SEARCH_LOG).items():
        searches.setdefault(method, []).append(frame)  # a method that never searched: none
    table = stepsize_map(runs, logs, {m: pd.concat(f) for m, f in searches.items()}, methods,
                         speedup)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(Path(out_csv).with_suffix(".md"),
                      markdown_table(stepsize_markdown(table)) + "\n")
    return table


def read_stepsize_map(path: str | Path) -> pd.DataFrame:
    """A written stepsize_map.csv, its columns checked."""
    table = read_table(path)
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ValueError(f"{path}: not a step-size map (missing columns {missing})")
    return table

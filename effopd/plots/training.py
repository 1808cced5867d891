"""Figures of the training runs: accuracy against the speed-up's three cost units, and the
speed-up estimator at work on every seed pair."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from effopd.methods import EFFOPD, OPD, Method, method_label
from effopd.plots.style import METHOD_COLORS, save_figure, setup
from effopd.reports.speedup import isotonic
from effopd.reports.stats import mean_ci95

UNITS = (("step", "optimizer steps"),
         ("generated_tokens", "generated tokens (training + validation rollouts)"),
         ("cpu_s", "CPU time (s; process and grading workers)"))


def _per_step(curves: pd.DataFrame, methods: Mapping[str, Method] | None = None
              ) -> pd.DataFrame:
    """Mean accuracy with its 95% CI over seeds, and mean costs, per (method, step)."""
    rows = []
    for (method, step), group in curves.groupby(["method", "step"]):
        mean, low, high = mean_ci95(group["avg@n"])
        rows.append({"Method": method_label(method, methods), "step": step,
                     "accuracy": mean, "low": low, "high": high,
                     **{unit: group[unit].mean() for unit, _ in UNITS[1:] if unit in group},
                     "seeds": len(group)})
    return pd.DataFrame(rows)


def plot_training_curves(curves: pd.DataFrame, benchmark: str, out_png: str | Path,
                         teacher_accuracy: float | None = None,
                         methods: Mapping[str, Method] | None = None) -> None:
    """One panel per cost unit: accuracy (mean and 95% CI band over seeds) against optimizer
    steps, generated tokens and CPU time (units without data are left out); the teacher's
    accuracy on the same benchmark as a dashed reference line when given."""
    setup()
    data = _per_step(curves[curves["benchmark"] == benchmark], methods)
    units = [(u, label) for u, label in UNITS if u in data and data[u].notna().any()]
    figure, axes = plt.subplots(1, len(units), figsize=(5 * len(units), 4), sharey=True,
                                squeeze=False)
    for axis, (x, label) in zip(axes[0], units, strict=True):
        for method, group in data.groupby("Method"):
            group = group.sort_values("step")
            color = METHOD_COLORS.get(method)
            axis.plot(group[x], group["accuracy"], marker="o", markersize=3, color=color,
                      label=f"{method} (n={group['seeds'].max()} seeds)")
            axis.fill_between(group[x], group["low"], group["high"], color=color, alpha=0.2,
                              linewidth=0)
        if teacher_accuracy is not None:
            axis.axhline(teacher_accuracy, color="black", linestyle="--", linewidth=1,
                         label=f"teacher ({teacher_accuracy:.1%})")
        axis.set_xlabel(label)
        axis.set_title(f"Accuracy per {label.split(' (')[0]}")
    axes[0][0].set_ylabel(f"{benchmark} accuracy (avg@n)")
    axes[0][0].legend(loc="lower right", title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_speedup_fits(curves: pd.DataFrame, speedup: pd.DataFrame, benchmark: str,
                      out_png: str | Path) -> None:
    """One panel per seed pair of EffOPD vs OPD: each run's accuracy on the common grid
    (points), its isotonic fit (line), the target (dashed) and each run's time to it."""
    setup()
    pairs = speedup[(speedup["comparison"] == "effopd_vs_opd") & (speedup["row"] == "pair")]
    summary = speedup[(speedup["comparison"] == "effopd_vs_opd")
                      & (speedup["row"] == "summary")]
    grid = [int(g) for g in str(summary["grid"].iloc[0]).split()] if len(summary) else []
    curves = curves[(curves["benchmark"] == benchmark) & curves["step"].isin(grid)]
    columns = min(4, max(1, len(pairs)))
    rows = math.ceil(len(pairs) / columns) if len(pairs) else 1
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), sharex=True,
                                sharey=True, squeeze=False)
    for axis, (_, pair) in zip(axes.flat, pairs.iterrows(), strict=False):
        for method, seed, t_key in ((OPD, pair["ref_seed"], "ref_steps_to_target"),
                                    (EFFOPD, pair["trt_seed"], "trt_steps_to_target")):
            run = curves[(curves["method"] == method) & (curves["seed"] == int(seed))]
            run = run.sort_values("step")
            label = method_label(method)
            color = METHOD_COLORS.get(label)
            axis.scatter(run["step"], run["avg@n"], s=12, color=color, alpha=0.6)
            axis.plot(run["step"], isotonic(run["avg@n"].to_numpy()), color=color,
                      label=f"{label} (isotonic fit)")
            if np.isfinite(pair[t_key]):
                axis.axvline(pair[t_key], color=color, linestyle=":", linewidth=1)
        axis.axhline(pair["target_accuracy"], color="black", linestyle="--", linewidth=1,
                     label="target")
        reached = (f"{pair['speedup_steps']:.2g}x" if pair["trt_reached"]
                   else "not reached")
        axis.set_title(f"seed {int(pair['ref_seed'])}: speed-up {reached}")
        axis.set_xlabel("optimizer step")
    for axis in axes.flat[len(pairs):]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel(f"{benchmark} accuracy (avg@n)")
    axes.flat[0].legend(loc="lower right", fontsize=8)
    figure.suptitle("EffOPD vs OPD: time to OPD's plateau target on the common grid")
    sns.despine(figure)
    save_figure(figure, out_png)

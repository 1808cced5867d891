"""Figure: test accuracy against training steps and against wall time, per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from effopd.plots.style import METHOD_COLORS, METHOD_LABELS, save_figure, setup
from effopd.reports.stats import mean_ci95


def _per_step(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy with its 95% CI over seeds, and mean wall time, per (method, step)."""
    rows = []
    for (method, step), group in curves.groupby(["method", "step"]):
        mean, low, high = mean_ci95(group["avg@n"])
        rows.append({"Method": METHOD_LABELS.get(method, method), "step": step,
                     "accuracy": mean, "low": low, "high": high,
                     "wall_s": group["train_wall_s"].mean(), "seeds": len(group)})
    return pd.DataFrame(rows)


def plot_training_curves(curves: pd.DataFrame, benchmark: str, out_png: str | Path) -> None:
    """Two panels: accuracy vs step, accuracy vs wall time (mean and 95% CI band over seeds)."""
    setup()
    data = _per_step(curves[curves["benchmark"] == benchmark])
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, x, label in ((axes[0], "step", "training step"),
                           (axes[1], "wall_s", "training wall time (s, line search included)")):
        for method, group in data.groupby("Method"):
            group = group.sort_values("step")
            color = METHOD_COLORS.get(method)
            axis.plot(group[x], group["accuracy"], marker="o", markersize=3, color=color,
                      label=f"{method} (n={group['seeds'].max()} seeds)")
            axis.fill_between(group[x], group["low"], group["high"], color=color, alpha=0.2,
                              linewidth=0)
        axis.set_xlabel(label)
    axes[0].set_ylabel(f"{benchmark} accuracy (avg@n)")
    axes[0].set_title("Accuracy per training step")
    axes[1].set_title("Accuracy per unit of wall time")
    axes[0].legend(loc="lower right", title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)

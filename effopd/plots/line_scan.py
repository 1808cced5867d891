"""The line scan's figure: where the best multiplier lies as training goes on, by
validation accuracy and by batch reverse KL (one panel each; the table is
effopd/reports/line_scan.py's)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effopd.plots.style import save_figure, setup
from effopd.reports.line_scan import best_multipliers
from effopd.reports.speedup import format_lr


def plot_line_scan(table: pd.DataFrame, out_png: str | Path) -> None:
    """Left: the multiplier m of theta_a + m d with the highest validation accuracy at each
    search step; right: the m with the lowest batch reverse KL; one line per learning rate
    (log-2 step axis), m = 1 (the plain step) and m = 3 (EffOPD's first candidate) marked."""
    setup()
    best = best_multipliers(table)
    rates = sorted(set(best["lr"]), reverse=True)
    colours = dict(zip(rates, plt.cm.viridis(np.linspace(0, 0.9, len(rates))), strict=True))
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for axis, column, title in ((axes[0], "best_m_val_acc", "Highest validation accuracy"),
                                (axes[1], "best_m_reverse_kl", "Lowest batch reverse KL")):
        for lr in rates:
            rows = best[best["lr"] == lr].groupby("step")[column].mean()
            axis.plot(rows.index, rows.to_numpy(), marker="o", color=colours[lr],
                      label=f"lr {format_lr(lr)}")
        axis.axhline(1, color="black", linewidth=1, label="m = 1 (the plain step)")
        axis.axhline(3, color="grey", linestyle="--", linewidth=1,
                     label="m = 3 (EffOPD's first candidate)")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("search step (optimizer steps)")
        axis.set_title(title)
    axes[0].set_ylabel("best multiplier m of theta_a + m d")
    axes[0].legend(loc="best", fontsize="small")
    save_figure(figure, out_png)

"""The step-size map's figure: every cell's accuracy curve, and EffOPD's speed-up against
the learning rate (one panel each; the table is effopd/reports/stepsize.py's)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effopd.methods import EFFOPD, OPD
from effopd.plots.style import METHOD_COLORS, save_figure, setup
from effopd.reports.speedup import format_lr


def _errors(table: pd.DataFrame, column: str) -> np.ndarray:
    """Asymmetric error bars (2 x n) of ``column`` from ``<column>_low`` / ``_high``."""
    value = table[column].to_numpy(float)
    return np.nan_to_num(np.vstack([value - table[f"{column}_low"].to_numpy(float),
                                    table[f"{column}_high"].to_numpy(float) - value]))


def plot_stepsize_map(table: pd.DataFrame, curves: pd.DataFrame, benchmark: str,
                      out_png: str | Path) -> None:
    """Left: accuracy (mean over seeds) against optimizer steps for every cell, one colour
    per learning rate, OPD solid and EffOPD dashed. Right: EffOPD's time-scale speed-up in
    steps (95% interval over seed pairs) against the learning rate (log scale), against
    OPD at the same learning rate and against OPD at its best learning rate (the dotted
    vertical line), with the no-speed-up line at 1."""
    setup()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    rates = sorted(set(table["lr"]))
    colours = dict(zip(rates, plt.cm.viridis(np.linspace(0, 0.9, len(rates))), strict=True))
    data = curves[curves["benchmark"] == benchmark]

    axis = axes[0]
    for _, cell in table.iterrows():
        mean = data[data["method"] == cell["method"]].groupby("step")["avg@n"].mean()
        axis.plot(mean.index, 100 * mean.to_numpy(), color=colours[cell["lr"]],
                  linestyle="-" if cell["algorithm"] == OPD else "--", marker=".",
                  label=f"{cell['label']} ({int(cell['seeds'])} seeds)")
    axis.set_xlabel("optimizer steps")
    axis.set_ylabel(f"{benchmark} accuracy (avg@n, %)")
    axis.set_title("Accuracy per cell (OPD solid, EffOPD dashed)")
    axis.legend(loc="best", fontsize="small", title="mean over seeds")

    axis = axes[1]
    effopd = table[table["algorithm"] == EFFOPD].sort_values("lr")
    axis.errorbar(effopd["lr"] * 0.97, effopd["timescale_steps"],
                  yerr=_errors(effopd, "timescale_steps"), marker="o", capsize=4,
                  color=METHOD_COLORS["EffOPD"], label="vs OPD at the same lr")
    axis.errorbar(effopd["lr"] * 1.03, effopd["vs_best_lr_steps"],
                  yerr=_errors(effopd, "vs_best_lr_steps"), marker="s", capsize=4,
                  color=METHOD_COLORS["OPD"], label="vs OPD at its best lr")
    best = table[table["best_lr"].astype(bool)]
    if len(best):
        axis.axvline(float(best["lr"].iloc[0]), color="grey", linestyle=":", linewidth=1.5,
                     label=f"OPD's best lr ({format_lr(best['lr'].iloc[0])})")
    axis.axhline(1, color="black", linestyle="--", linewidth=1)
    axis.set_xscale("log")
    axis.set_xlabel("learning rate (peak, AdamW)")
    axis.set_ylabel("time-scale speed-up (x, optimizer steps)")
    axis.set_title("EffOPD's speed-up at the horizon")
    axis.legend(loc="best", title="geometric mean, 95% CI")
    save_figure(figure, out_png)

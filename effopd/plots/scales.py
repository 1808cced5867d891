"""The cross-scale figure of the model-scale sweep: OPD's gain, the embedding shift of OPD
and RL, and EffOPD's speed-up, each against the student's parameters (one panel each)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from effopd.methods import OPD, RL, method_label
from effopd.plots.style import METHOD_COLORS, save_figure, setup


def _errors(table: pd.DataFrame, column: str, scale: float = 1.0) -> np.ndarray:
    """Asymmetric error bars (2 x n) of ``column`` from its ``_ci95_low`` / ``_ci95_high``;
    zero where the interval is missing."""
    value = table[column].to_numpy(float)
    low = table[f"{column}_ci95_low"].to_numpy(float)
    high = table[f"{column}_ci95_high"].to_numpy(float)
    return np.nan_to_num(np.vstack([value - low, high - value]) * scale)


def _scale_axis(axis: plt.Axes, table: pd.DataFrame) -> None:
    axis.set_xscale("log", base=2)
    axis.set_xticks(table["millions"], [f"{m:.2f}\n({s})" for m, s
                                        in zip(table["millions"], table["scale"], strict=True)])
    axis.minorticks_off()
    axis.set_xlabel("student parameters (millions; scale)")


def plot_cross_scale(table: pd.DataFrame, out_png: str | Path) -> None:
    """Three panels against the student's parameters (log scale), 95% intervals as bars:
    OPD's gain over the base student (accuracy points, claims row 0a); the embedding shift,
    1 - mean cosine between base and final generated-token embedding rows, of OPD and RL
    (log scale; over seeds); EffOPD's time-scale speed-up over OPD in optimizer steps with
    the OPD-against-OPD null control and the no-speed-up line at 1 (log scale: a ratio
    whose intervals are geometric)."""
    setup()
    table = table.assign(millions=table["student_parameters"] / 1e6)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    axis = axes[0]
    axis.errorbar(table["millions"], 100 * table["opd_gain"],
                  yerr=_errors(table, "opd_gain", 100), marker="o", capsize=4,
                  color=METHOD_COLORS["OPD"])
    axis.axhline(0, color="black", linewidth=1)
    axis.set_ylabel("OPD final - base student (accuracy points)")
    axis.set_title("OPD's gain over the base student (95% CI)")

    axis = axes[1]
    for method, offset in ((OPD, 0.97), (RL, 1.03)):
        label = method_label(method)
        shift = 1 - table[f"{method}_embedding_cosine"]
        low = 1 - table[f"{method}_embedding_cosine_ci95_high"]
        high = 1 - table[f"{method}_embedding_cosine_ci95_low"]
        errors = np.nan_to_num(np.vstack([shift - low, high - shift]))
        axis.errorbar(table["millions"] * offset, shift, yerr=errors, marker="o", capsize=4,
                      color=METHOD_COLORS[label], label=label)
    axis.set_yscale("log")
    axis.set_ylabel("1 - mean cosine to base (embedding rows)")
    axis.set_title("Embedding shift of OPD and RL")
    axis.legend(loc="best", title="mean over seeds, 95% CI")

    axis = axes[2]
    axis.errorbar(table["millions"] * 0.97, table["effopd_timescale_steps"],
                  yerr=_errors(table, "effopd_timescale_steps"), marker="o", capsize=4,
                  color=METHOD_COLORS["EffOPD"], label="EffOPD vs OPD")
    axis.errorbar(table["millions"] * 1.03, table["null_timescale_steps"],
                  yerr=_errors(table, "null_timescale_steps"), marker="s", capsize=4,
                  color="grey", label="null: OPD vs OPD")
    axis.axhline(1, color="black", linestyle="--", linewidth=1)
    axis.set_yscale("log")  # a ratio, with geometric intervals
    axis.set_ylabel("time-scale speed-up (x, optimizer steps; log)")
    axis.set_title("EffOPD's speed-up over OPD")
    axis.legend(loc="best", title="geometric mean, 95% CI")

    for axis in axes:
        _scale_axis(axis, table)
    save_figure(figure, out_png)

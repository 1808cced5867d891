"""Figures of the checkpoint-series analyses, drawn from the analysis tables only.

Each figure holds one claim of the paper (SPEC section 1), one idea per panel;
lines and bars are the mean over seeds, bands and error bars the 95% CI
(absent with one seed). Methods keep the colours of the training figure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from effopd.methods import method_label
from effopd.plots.style import METHOD_COLORS, save_figure, setup
from effopd.tables import ANALYSIS_FIGURES, read_table

log = logging.getLogger(__name__)

FIGURES = ANALYSIS_FIGURES  # the names, in effopd/tables.py (the rule files read them there)
NORM_LABEL = r"update norm $\|\Delta\|_F$ (Frobenius)"
DENSITY_LABEL = r"share of $\|\Delta\|_F^2$ / share of parameters (1 = by size)"
FRACTION_LABEL = "training fraction (step / final step)"
BOUNDED = {"accuracy", "energy", "left_overlap", "right_overlap", "top1_left_abs_cos",
           "top1_right_abs_cos", "share"}
OVERLAP_LABELS = {"left": r"overlap $\|U_{t,k}^T U_{T,k}\|_F^2 / k$",
                  "right": r"overlap $\|V_{t,k}^T V_{T,k}\|_F^2 / k$"}


def _methods(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["method"])) if not table.empty else []


def _label(method: str) -> str:
    return method_label(method)


def _color(method: str) -> str | None:
    return METHOD_COLORS.get(_label(method))


def _accuracy_label(benchmark: str) -> str:
    return f"{benchmark} accuracy (avg@n, fraction correct)" if benchmark \
        else "accuracy (avg@n, fraction correct)"


def _line(axis: plt.Axes, table: pd.DataFrame, x: str, stem: str, *, method: str,
          label: str | None = None, linestyle: str = "-", marker: str = "o") -> None:
    """Mean line of ``<stem>_mean`` against ``x`` with its CI band, one method."""
    data = table.sort_values(x)
    color = _color(method)
    axis.plot(data[x], data[f"{stem}_mean"], marker=marker, markersize=4, color=color,
              linestyle=linestyle, label=label if label is not None else _label(method))
    low, high = data[f"{stem}_ci95_low"], data[f"{stem}_ci95_high"]
    if stem in BOUNDED:  # a t-interval over few seeds can leave [0, 1]
        low, high = low.clip(0, 1), high.clip(0, 1)
    if low.notna().any():
        axis.fill_between(data[x].astype(float), low.astype(float), high.astype(float),
                          color=color, alpha=0.2, linewidth=0)


def _method_lines(axis: plt.Axes, table: pd.DataFrame, x: str, stem: str) -> None:
    for method in _methods(table):
        _line(axis, table[table["method"] == method], x, stem, method=method)


def _grouped_bars(axis: plt.Axes, table: pd.DataFrame, category: str, stem: str,
                  categories: Sequence) -> None:
    """Bars of ``<stem>_mean`` per category, one bar per method, 95% CI error bars."""
    methods = _methods(table)
    width = 0.8 / max(len(methods), 1)
    positions = np.arange(len(categories))
    for index, method in enumerate(methods):
        rows = table[table["method"] == method].set_index(category)
        rows = rows.reindex(list(categories))
        mean = rows[f"{stem}_mean"].astype(float).to_numpy()
        low = rows[f"{stem}_ci95_low"].astype(float).to_numpy()
        high = rows[f"{stem}_ci95_high"].astype(float).to_numpy()
        errors = np.vstack([mean - low, high - mean])
        axis.bar(positions + (index - (len(methods) - 1) / 2) * width, mean, width,
                 color=_color(method), label=_label(method),
                 yerr=None if np.isnan(errors).all() else np.nan_to_num(errors), capsize=2)
    axis.set_xticks(positions, [str(c) for c in categories],
                    rotation=45 if len(categories) > 6 else 0,
                    ha="right" if len(categories) > 6 else "center")


def _legend(axis: plt.Axes, **kwargs) -> None:
    if axis.get_legend_handles_labels()[0]:
        axis.legend(**kwargs)


# --------------------------------------------------------------------------- claim 1


def plot_update_size_accuracy(sizes: pd.DataFrame, scaling: pd.DataFrame, benchmark: str,
                              out_png: str | Path) -> None:
    """(a) accuracy vs ||Delta_t|| over training; (b) accuracy vs alpha ||Delta_T|| (scaled)."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    _method_lines(axes[0], sizes, "block_norm_mean", "accuracy")
    axes[0].set_title("Training checkpoints: accuracy vs update size")
    final = scaling[scaling["kind"] == "final"]
    _method_lines(axes[1], final, "scaled_norm_mean", "accuracy")
    axes[1].set_title(r"Scaled final update $\theta_0 + \alpha\Delta_T$")
    for axis in axes:
        axis.set_xlabel(NORM_LABEL + ", block weights")
    axes[0].set_ylabel(_accuracy_label(benchmark))
    _legend(axes[0], title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_scaling_curves(scaling: pd.DataFrame, benchmark: str, out_png: str | Path) -> None:
    """Accuracy of theta_0 + alpha Delta against alpha: (a) final, (b) early checkpoint."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, kind in zip(axes, ("final", "early"), strict=True):
        rows = scaling[scaling["kind"] == kind]
        _method_lines(axis, rows, "alpha", "accuracy")
        if kind == "early" and not rows.empty:
            steps = ", ".join(f"{_label(m)} step {g['step_mean'].iloc[0]:g}"
                              for m, g in rows.groupby("method", sort=False))
            axis.set_title(f"Early checkpoint ({steps})", fontsize=9)
        else:
            axis.set_title("Final checkpoint")
        axis.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        axis.set_xlabel(r"scale $\alpha$ of the update (multiple of $\Delta$)")
    axes[0].set_ylabel(_accuracy_label(benchmark))
    _legend(axes[0], title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


# --------------------------------------------------------------------------- claim 2


def plot_module_allocation_layers(layers: pd.DataFrame, out_png: str | Path) -> None:
    """Final update per layer: (a) ||Delta||_F, (b) share of the squared update per unit of
    parameter share (1 = what the layer's size predicts)."""
    rows = layers[layers["group"] == "all"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    _method_lines(axes[0], rows, "layer", "delta_norm")
    axes[0].set_ylabel(NORM_LABEL)
    axes[0].set_title("Update size per layer (final checkpoint)")
    _method_lines(axes[1], rows, "layer", "share_per_param")
    axes[1].axhline(1.0, color="grey", linestyle="--", linewidth=1)
    axes[1].set_ylabel(DENSITY_LABEL)
    axes[1].set_title("Share of the update per parameter, per layer")
    for axis in axes:
        axis.set_xlabel("layer (transformer block index)")
        if not rows.empty:
            axis.set_xticks(sorted(set(rows["layer"].astype(int))))
    _legend(axes[0], title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_module_allocation_modules(modules: pd.DataFrame, out_png: str | Path) -> None:
    """Final update per module type: (a) ||Delta||_F, (b) share of the squared update per
    unit of parameter share (1 = what the module's size predicts)."""
    categories = list(dict.fromkeys(modules["module"]))
    figure, axes = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    _grouped_bars(axes[0], modules, "module", "delta_norm", categories)
    axes[0].set_ylabel(NORM_LABEL)
    axes[0].set_title("Update size per module type, summed over layers (final checkpoint)")
    _grouped_bars(axes[1], modules, "module", "share_per_param", categories)
    axes[1].axhline(1.0, color="grey", linestyle="--", linewidth=1)
    axes[1].set_ylabel(DENSITY_LABEL)
    axes[1].set_title("Share of the update per parameter, per module type")
    axes[1].set_xlabel("module type")
    _legend(axes[0], title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_module_utility(utility: pd.DataFrame, benchmark: str, out_png: str | Path) -> None:
    """Accuracy gain over theta_0 when one part of the final update is injected:
    (a) sliding layer windows, (b) MLP, attention, embeddings (and the full update)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True,
                                gridspec_kw={"width_ratios": [3, 2]})
    windows = utility[utility["kind"] == "window"]
    categories = list(dict.fromkeys(windows.sort_values("start")["intervention"]))
    _grouped_bars(axes[0], windows, "intervention", "gain",
                  categories)
    if categories:
        axes[0].set_xticks(range(len(categories)),
                           [c.removeprefix("window_L").replace("-", "–") for c in categories],
                           rotation=45 if len(categories) > 6 else 0)
    axes[0].set_xlabel("injected layer window (first–last layer)")
    axes[0].set_title("Marginal utility of layer windows")
    parts = utility[utility["intervention"].isin(["mlp", "attention", "embedding", "full"])]
    _grouped_bars(axes[1], parts, "intervention", "gain", ["mlp", "attention", "embedding",
                                                           "full"])
    axes[1].set_xlabel("injected part of the update")
    axes[1].set_title("Marginal utility of module groups")
    suffix = f", {benchmark}" if benchmark else ""
    axes[0].set_ylabel(f"accuracy gain over the base (avg@n{suffix})")
    for axis in axes:
        axis.axhline(0, color="grey", linewidth=0.8)
    _legend(axes[1], title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


# --------------------------------------------------------------------------- claim 3


def plot_update_spectra(spectra: pd.DataFrame, out_png: str | Path) -> None:
    """Final update: (a) effective rank / min(m, n) and (b) stable rank per module type,
    (c) top-k energy share against k over all matrices."""
    per_module = spectra[spectra["module"] != "all"]
    categories = list(dict.fromkeys(per_module["module"]))
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    _grouped_bars(axes[0], per_module, "module", "effective_rank_ratio", categories)
    axes[0].set_ylabel("effective rank / min(m, n)")
    axes[0].set_title("Effective rank (Roy-Vetterli), normalised")
    _grouped_bars(axes[1], per_module, "module", "stable_rank", categories)
    axes[1].set_ylabel(r"stable rank $\|\Delta\|_F^2 / \sigma_1^2$")
    axes[1].set_title("Stable rank")
    for axis in axes[:2]:
        axis.set_xlabel("module type (mean over layers)")
    overall = spectra[spectra["module"] == "all"]
    ks = sorted(int(c.removeprefix("energy_share_k").removesuffix("_mean"))
                for c in spectra.columns if c.startswith("energy_share_k") and c.endswith("_mean"))
    long = pd.concat([overall.assign(k=k, **{s: overall[f"energy_share_k{k}_{s}"]
                                             for s in ("mean", "ci95_low", "ci95_high")})
                      for k in ks], ignore_index=True) if ks else overall.iloc[0:0]
    long = long.rename(columns={"mean": "energy_mean", "ci95_low": "energy_ci95_low",
                                "ci95_high": "energy_ci95_high"})
    _method_lines(axes[2], long, "k", "energy")
    axes[2].set_xscale("log", base=2)
    axes[2].set_xlabel("k (top singular directions)")
    axes[2].set_ylabel(r"energy share $\sum_{i\leq k}\sigma_i^2 / \sum_i \sigma_i^2$")
    axes[2].set_title("Top-k energy (mean over matrices)")
    _legend(axes[2], title="Mean, 95% CI over seeds")
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_rank_k_accuracy(rank_k: pd.DataFrame, benchmark: str, out_png: str | Path) -> None:
    """Accuracy of the rank-k rescaled final update against k, with the full update and base."""
    figure, axis = plt.subplots(figsize=(6, 4))
    truncated = rank_k[rank_k["variant"] == "rank_k"].assign(
        k=lambda t: pd.to_numeric(t["k"]).astype(float))
    _method_lines(axis, truncated, "k", "accuracy")
    for method in _methods(rank_k):
        rows = rank_k[rank_k["method"] == method].set_index("variant")
        for variant, style in (("full", "--"), ("base", ":")):
            if variant in rows.index:
                axis.axhline(float(rows.loc[variant, "accuracy_mean"]), color=_color(method),
                             linestyle=style, linewidth=1)
    axis.plot([], [], color="grey", linestyle="--", label="full update of the matrices")
    axis.plot([], [], color="grey", linestyle=":", label=r"base $\theta_0$")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("rank k of the truncated update (rescaled to the full norm)")
    axis.set_ylabel(_accuracy_label(benchmark))
    axis.set_title("Accuracy of the rank-k update")
    _legend(axis, fontsize=8)
    sns.despine(figure)
    save_figure(figure, out_png)


def _random_baseline(axis: plt.Axes, rows: pd.DataFrame, x: str, column: str) -> None:
    data = rows.groupby(x)[column].mean().sort_index()
    if data.notna().any():
        axis.plot(data.index, data.to_numpy(), color="grey", linestyle=":",
                  label="random subspace (k / n)")


def plot_subspace_alignment(overlap: pd.DataFrame, top1: pd.DataFrame, plot_k: int,
                            out_png: str | Path) -> None:
    """Against training fraction: top-k overlap with the final update's subspaces,
    (a) left and (b) right, and |cos| of the top-1 singular vectors, (c) left, (d) right."""
    ks = sorted(set(overlap["k"])) if not overlap.empty else [plot_k]
    k = max((x for x in ks if x <= plot_k), default=ks[0])
    rows = overlap[overlap["k"] == k]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, sharey=True)
    for axis, side in zip(axes[0], ("left", "right"), strict=True):
        _method_lines(axis, rows, "fraction_mean", f"{side}_overlap")
        _random_baseline(axis, rows, "fraction_mean", f"{side}_random_mean")
        axis.set_title(f"{side.capitalize()} singular subspace, k = {k}")
        axis.set_ylabel(OVERLAP_LABELS[side])
    for axis, side in zip(axes[1], ("left", "right"), strict=True):
        _method_lines(axis, top1, "fraction_mean", f"top1_{side}_abs_cos")
        axis.set_title(f"Top-1 {side} singular vector")
        axis.set_ylabel(r"$|\cos|$ with the final update's top-1 vector")
        axis.set_xlabel(FRACTION_LABEL)
    axes[0][0].set_ylim(-0.02, 1.05)
    _legend(axes[0][0], fontsize=8)
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_subspace_alignment_early(overlap: pd.DataFrame, out_png: str | Path) -> None:
    """Overlap of the EARLY checkpoint's top-k subspaces with the final ones, against k."""
    rows = overlap[overlap["early"].astype(str) == "True"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, side in zip(axes, ("left", "right"), strict=True):
        _method_lines(axis, rows, "k", f"{side}_overlap")
        _random_baseline(axis, rows, "k", f"{side}_random_mean")
        axis.set_xscale("log", base=2)
        axis.set_xlabel("k (top singular directions)")
        axis.set_title(f"Early checkpoint vs final: {side} subspaces")
        axis.set_ylabel(OVERLAP_LABELS[side])
    if not rows.empty:
        steps = ", ".join(f"{_label(m)} step {int(g['step'].iloc[0])}"
                          for m, g in rows.groupby("method", sort=False))
        figure.suptitle(f"Early checkpoints: {steps}", fontsize=9)
    axes[0].set_ylim(-0.02, 1.05)
    _legend(axes[0], fontsize=8)
    sns.despine(figure)
    save_figure(figure, out_png)


# --------------------------------------------------------------------------- claim 4


def plot_embedding_shift(shift: pd.DataFrame, out_png: str | Path) -> None:
    """Mean cosine of base vs trained embedding rows over the generated tokens, per method
    (a point and its 95% CI: the values sit close to 1, where bars would hide them)."""
    figure, axis = plt.subplots(figsize=(5, 4))
    for position, method in enumerate(_methods(shift)):
        row = shift[shift["method"] == method].iloc[0]
        mean = float(row["mean_cosine_mean"])
        low, high = float(row["mean_cosine_ci95_low"]), float(row["mean_cosine_ci95_high"])
        error = None if np.isnan(low) else [[mean - low], [high - mean]]
        axis.errorbar([position], [mean], yerr=error, fmt="o", markersize=8, capsize=4,
                      color=_color(method), label=f"{_label(method)} (n={int(row['n_seeds'])})")
    methods = _methods(shift)
    axis.set_xticks(range(len(methods)), [_label(m) for m in methods])
    axis.set_xlim(-0.6, len(methods) - 0.4)
    axis.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    axis.set_ylabel("mean cosine(base row, trained row)")
    axis.set_xlabel("method (input-embedding rows of the generated tokens)")
    axis.set_title("Embedding shift (1 = unchanged)")
    _legend(axis, title="Mean, 95% CI over seeds", fontsize=8)
    sns.despine(figure)
    save_figure(figure, out_png)


def plot_embedding_projection(projection: pd.DataFrame, out_png: str | Path) -> None:
    """Base vs trained embedding rows in one 2-D PCA basis, one panel per method."""
    methods = _methods(projection) or ["(no tokens)"]
    figure, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 4), squeeze=False)
    for axis, method in zip(axes[0], methods, strict=True):
        rows = projection[projection["method"] == method] if not projection.empty \
            else projection
        for source, marker, alpha in (("base", "o", 0.5), ("trained", "x", 0.8)):
            points = rows[rows["source"] == source] if not rows.empty else rows
            axis.scatter(points["x"] if not points.empty else [],
                         points["y"] if not points.empty else [], s=10, marker=marker,
                         alpha=alpha, label=f"{source} rows",
                         color="grey" if source == "base" else _color(method))
        explained = ""
        if not rows.empty:
            explained = (f" ({rows['explained_x'].iloc[0]:.0%}, "
                         f"{rows['explained_y'].iloc[0]:.0%} of variance)")
        axis.set_title(f"{_label(method)}: seed {int(rows['seed'].iloc[0])}" if not rows.empty
                       else method, fontsize=10)
        axis.set_xlabel(f"PC 1 (embedding units){explained if explained else ''}", fontsize=8)
        axis.set_ylabel("PC 2 (embedding units)")
        _legend(axis, fontsize=8)
    sns.despine(figure)
    save_figure(figure, out_png)


# --------------------------------------------------------------------------- all figures


def plot_analysis_figures(tables_dir: str | Path, out_dir: str | Path, benchmark: str = "",
                          plot_k: int = 4) -> dict[str, Path]:
    """Draw every analysis figure (``FIGURES``) from the tables in ``tables_dir``."""
    setup()
    tables_dir, out_dir = Path(tables_dir), Path(out_dir)

    def read(name: str) -> pd.DataFrame:
        return read_table(tables_dir / f"{name}.csv")

    paths = {name: out_dir / f"{name}.png" for name in FIGURES}
    scaling = read("scaling_curves")
    plot_update_size_accuracy(read("update_size_accuracy"), scaling, benchmark,
                              paths["update_size_accuracy"])
    plot_scaling_curves(scaling, benchmark, paths["scaling_curves"])
    plot_module_allocation_layers(read("module_allocation_layers"),
                                  paths["module_allocation_layers"])
    plot_module_allocation_modules(read("module_allocation_modules"),
                                   paths["module_allocation_modules"])
    plot_module_utility(read("module_utility"), benchmark, paths["module_utility"])
    plot_update_spectra(read("update_spectra"), paths["update_spectra"])
    plot_rank_k_accuracy(read("rank_k_accuracy"), benchmark, paths["rank_k_accuracy"])
    overlap = read("subspace_alignment")
    plot_subspace_alignment(overlap, read("top1_alignment"), plot_k,
                            paths["subspace_alignment"])
    plot_subspace_alignment_early(overlap, paths["subspace_alignment_early"])
    plot_embedding_shift(read("embedding_shift"), paths["embedding_shift"])
    plot_embedding_projection(read("embedding_projection"), paths["embedding_projection"])
    for path in paths.values():
        log.info("wrote %s (+ .pdf)", path)
    return paths

"""Tables of the checkpoint-series analyses over runs: mean and 95% CI over seeds.

Inputs are the per-run outputs of ``effopd analyze`` and ``effopd evaluate-*``
in ``.../<method>/seed<seed>/`` (method and seed are read from the path) and
the runs' checkpoint scores from ``evaluate-series``. Every number reported
per method is first computed per seed, then summarised over seeds as
``<metric>_mean``, ``<metric>_ci95_low``, ``<metric>_ci95_high`` (Student t,
:func:`effopd.reports.stats.mean_ci95`; one seed gives an empty interval) with
``n_seeds``. "Final" means the run's last checkpoint; the update is always
Delta = theta_t - theta_0.

Tables (CSV + Markdown), by the claim they test (SPEC section 1):

- ``update_size_accuracy``     claim 1: ||Delta_t||_F of the block weights and accuracy
                               per checkpoint (step 0 = the base, norm 0);
- ``update_efficiency``        claim 1: final gain in accuracy per unit of ||Delta_T||_F;
- ``scaling_curves``           claim 1/3: accuracy of theta_0 + alpha Delta (final, early);
- ``early_recovery``           claim 3: share of the final gain that the best scaled early
                               checkpoint recovers, (acc(early, alpha*) - acc_0)
                               / (acc_T - acc_0) with alpha* chosen on the selection
                               (validation) benchmark (NaN when acc_T <= acc_0);
- ``module_allocation_layers`` claim 2: ||Delta||_F and share of the squared update per
                               layer and group (attention, mlp, norm, all) of the final update,
                               with the parameter share and the share per parameter
                               (share / parameter share: 1 = what the size predicts);
- ``module_allocation_modules``claim 2: the same per module type (q ... down, norms,
                               embed, lm_head, final_norm);
- ``module_utility``           claim 2: accuracy with one part of the final update
                               injected, its gain over theta_0 and share of the full gain;
- ``update_spectra``           claim 3: effective rank (also / min(m, n)), stable rank,
                               top-k energy shares and rank-k norm ratios per module type;
- ``rank_k_accuracy``          claim 3: accuracy of the rank-k rescaled update;
- ``subspace_alignment``       claim 3: left / right top-k overlap with the final update
                               per checkpoint and k, with the random baseline k / n;
                               ``early`` marks the early checkpoint of the scaling analysis;
- ``top1_alignment``           claim 3: |cos| of the top-1 singular vectors;
- ``embedding_shift``          claim 4: mean (and median, min) cosine of base vs trained
                               embedding rows over the generated tokens;
- ``embedding_projection``     claim 4: 2-D PCA coordinates of those rows for the first
                               seed of each method (at most ``projection_max_tokens`` tokens).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from effopd.analysis.series import early_index
from effopd.analysis.settings import EARLY_FRACTION, PROJECTION_MAX_TOKENS
from effopd.methods import EFFOPD, OPD, RL
from effopd.reports.stats import mean_ci95
from effopd.tables import ANALYSIS_RUN_FILES, ANALYSIS_TABLES, EVAL_SERIES, runs_by_key

log = logging.getLogger(__name__)

METHOD_ORDER = [OPD, RL, EFFOPD]
TABLES = ANALYSIS_TABLES  # the names, in effopd/tables.py (the rule files read them there)
MODULE_ORDER = ["embed", "q", "k", "v", "o", "q_norm", "k_norm", "gate", "up", "down",
                "input_norm", "post_attn_norm", "final_norm", "lm_head"]


def load_runs(run_dirs: Sequence[str | Path], file_name: str) -> pd.DataFrame:
    """Concatenate ``<run_dir>/<file_name>`` of every run; each file names its run in its
    method and seed columns (first), and two files of one run are refused."""
    runs = runs_by_key([Path(run_dir) / file_name for run_dir in run_dirs],
                       ANALYSIS_RUN_FILES[file_name])
    frames = [table for _, table in runs.values()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize(per_seed: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str],
              sort_by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean and 95% CI over seeds of each metric, per group of ``keys`` (method first).

    Groups keep the order of their first row, sorted by method (opd, rl,
    effopd) and then by ``sort_by``.
    """
    if per_seed.empty:
        return pd.DataFrame(columns=[*keys, "n_seeds", *(f"{m}_{s}" for m in metrics
                                                          for s in ("mean", "ci95_low",
                                                                    "ci95_high"))])
    rows = []
    for values, group in per_seed.groupby(list(keys), sort=False, dropna=False):
        row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
        row["n_seeds"] = int(group["seed"].nunique())
        for metric in metrics:
            mean, low, high = mean_ci95(pd.to_numeric(group[metric], errors="coerce"))
            row[f"{metric}_mean"], row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = (
                mean, low, high)
        rows.append(row)
    return sort_methods(pd.DataFrame(rows), sort_by)


def sort_methods(table: pd.DataFrame, then: Sequence[str] = ()) -> pd.DataFrame:
    """Sort by method in the order opd, rl, effopd (others after), then by ``then`` (stable)."""
    if table.empty:
        return table
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    key = table["method"].map(lambda m: order.get(m, len(order)))
    return (table.assign(_order=key).sort_values(["_order", *then], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


def compact(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """The table with each metric's three columns as one "mean [low, high]" column (Markdown)."""
    out = pd.DataFrame(index=table.index)
    for column in table.columns:
        if column.endswith(("_ci95_low", "_ci95_high")):
            continue
        if column.endswith("_mean"):
            stem = column.removesuffix("_mean")
            out[stem] = [_interval(m, lo, hi, digits) for m, lo, hi in zip(
                table[column], table[f"{stem}_ci95_low"], table[f"{stem}_ci95_high"],
                strict=True)]
        else:
            out[column] = table[column]
    return out


def _interval(mean: float, low: float, high: float, digits: int) -> str:
    def fmt(x: float) -> str:
        return f"{x:.{digits}g}"
    if mean is None or pd.isna(mean):
        return ""
    if low is None or pd.isna(low):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def write_summary_table(table: pd.DataFrame, csv_path: str | Path) -> Path:
    """Write the table as CSV (every column) and Markdown (:func:`compact`) beside it."""
    from effopd.io import atomic_path, atomic_write_text, markdown_table

    csv_path = Path(csv_path)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    rendered = compact(table) if any(c.endswith("_mean") for c in table.columns) else table
    atomic_write_text(csv_path.with_suffix(".md"), markdown_table(rendered) + "\n")
    return csv_path


def _final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of each run's last checkpoint (largest step; the table's last label without steps)."""
    last = table.groupby(["method", "seed"])["step"].transform("max")
    return table[table["step"] == last]


# --------------------------------------------------------------------------- claim 1


def load_eval_curves(eval_csvs: Sequence[str | Path]) -> pd.DataFrame:
    """(method, seed, step, accuracy) from the runs' evaluate-series CSVs."""
    frames = [scores[["method", "seed", "step", "benchmark", "avg@n"]]
              .rename(columns={"avg@n": "accuracy"})
              for _, scores in runs_by_key(eval_csvs, EVAL_SERIES).values()]
    return pd.concat(frames, ignore_index=True)


def update_size_per_seed(norms: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed, step): block update norm and accuracy; step 0 is the base (norm 0)."""
    base = curves[curves["step"] == 0][["method", "seed"]].assign(step=0, block_norm=0.0,
                                                                  block_relative_norm=0.0)
    sizes = pd.concat([base, norms[["method", "seed", "step", "block_norm",
                                    "block_relative_norm"]]], ignore_index=True)
    sizes["step"] = sizes["step"].astype(int)
    merged = sizes.merge(curves, on=["method", "seed", "step"], how="left")
    final = merged.groupby(["method", "seed"])["step"].transform("max")
    merged["fraction"] = merged["step"] / final
    return merged


def update_size_accuracy(per_seed: pd.DataFrame) -> pd.DataFrame:
    return summarize(per_seed, ["method", "step"],
                     ["fraction", "block_norm", "block_relative_norm", "accuracy"], ["step"])


def update_efficiency(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per method: final ||Delta||_F, final gain over the base, gain per unit norm."""
    rows = []
    for (method, seed), run in per_seed.groupby(["method", "seed"]):
        run = run.sort_values("step")
        base, final = run.iloc[0], run.iloc[-1]
        gain = final["accuracy"] - base["accuracy"]
        rows.append({"method": method, "seed": seed, "final_step": int(final["step"]),
                     "base_accuracy": base["accuracy"], "final_accuracy": final["accuracy"],
                     "gain": gain, "final_block_norm": final["block_norm"],
                     "gain_per_unit_norm": gain / final["block_norm"]
                     if final["block_norm"] > 0 else math.nan})
    return summarize(pd.DataFrame(rows), ["method"],
                     ["final_step", "base_accuracy", "final_accuracy", "gain",
                      "final_block_norm", "gain_per_unit_norm"])


def scaling_per_seed(scaling: pd.DataFrame, norms: pd.DataFrame) -> pd.DataFrame:
    """Scaling rows with scaled_norm = alpha ||Delta_step||_F (block weights)."""
    norms = norms[["method", "seed", "step", "block_norm"]]
    merged = scaling.merge(norms, on=["method", "seed", "step"], how="left")
    merged["scaled_norm"] = merged["alpha"] * merged["block_norm"]
    return merged.rename(columns={"avg@n": "accuracy"})


def series_rows(scaling: pd.DataFrame) -> pd.DataFrame:
    """Scaling rows scored on each run's series benchmark (that of its final-checkpoint rows),
    without the early checkpoint's rows on the selection benchmark."""
    series = scaling[scaling["kind"] == "final"].groupby(["method", "seed"])["benchmark"].first()
    keep = [series.get((m, s)) == b for m, s, b in
            zip(scaling["method"], scaling["seed"], scaling["benchmark"], strict=True)]
    return scaling[keep]


def scaling_curves(per_seed: pd.DataFrame) -> pd.DataFrame:
    per_seed = series_rows(per_seed)
    table = summarize(per_seed.assign(kind_order=per_seed["kind"].map({"final": 0, "early": 1})),
                      ["method", "kind_order", "kind", "alpha"],
                      ["step", "fraction", "scaled_norm", "accuracy"], ["kind_order", "alpha"])
    return table.drop(columns="kind_order")


def early_recovery(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per method: how much of the final gain the best scaled early checkpoint recovers.

    The best alpha is chosen on the selection benchmark (the early checkpoint's rows
    scored there) and its accuracy reported on the series benchmark, so the choice
    never sees the problems it is reported on (ties: the smaller alpha). Results
    without selection rows fall back to choosing on the series benchmark itself
    (``selected_on`` says so: that estimate carries a winner's curse).
    """
    rows = []
    for (method, seed), everything in per_seed.groupby(["method", "seed"]):
        run = series_rows(everything)
        final, early = run[run["kind"] == "final"], run[run["kind"] == "early"]
        selection = everything[(everything["kind"] == "early")
                               & ~everything.index.isin(run.index)]
        chooser = (selection if not selection.empty else early).sort_values("alpha")
        best_alpha = float(chooser.loc[chooser["accuracy"].idxmax(), "alpha"])
        best = early.loc[early["alpha"] == best_alpha].iloc[0]
        base_acc = float(final.loc[final["alpha"] == 0, "accuracy"].mean())
        final_acc = float(final.loc[final["alpha"] == 1, "accuracy"].mean())
        unscaled = float(early.loc[early["alpha"] == 1, "accuracy"].mean())
        gain = final_acc - base_acc
        rows.append({"method": method, "seed": seed, "early_step": best["step"],
                     "early_fraction": best["fraction"], "base_accuracy": base_acc,
                     "final_accuracy": final_acc, "early_accuracy": unscaled,
                     "best_scaled_early_accuracy": best["accuracy"],
                     "best_alpha": best["alpha"],
                     "selected_on": "selection benchmark" if not selection.empty
                     else "series benchmark (winner's curse)",
                     "recovered_unscaled": (unscaled - base_acc) / gain if gain > 0 else math.nan,
                     "recovered_best_scaled": (best["accuracy"] - base_acc) / gain
                     if gain > 0 else math.nan})
    return summarize(pd.DataFrame(rows), ["method", "selected_on"],
                     ["early_step", "early_fraction", "base_accuracy", "final_accuracy",
                      "early_accuracy", "best_scaled_early_accuracy", "best_alpha",
                      "recovered_unscaled", "recovered_best_scaled"])


# --------------------------------------------------------------------------- claim 2


def _with_density(table: pd.DataFrame, final_allocation: pd.DataFrame) -> pd.DataFrame:
    """Add ``param_share`` (numel over all tensors of the run) and ``share_per_param`` =
    share / param_share: 1 when a part gets the update its parameter count predicts."""
    totals = final_allocation.groupby(["method", "seed"])["numel"].sum().rename("_total")
    table = table.join(totals, on=["method", "seed"])
    table["param_share"] = table.pop("numel") / table.pop("_total")
    table["share_per_param"] = table["share"] / table["param_share"]
    return table


def allocation_by_layer(final_allocation: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed, layer, group incl. "all"): ||Delta||_F, share of ||Delta||^2 (over
    every tensor), parameter share and share per parameter (block tensors)."""
    block = final_allocation.dropna(subset=["layer"]).assign(
        delta_sq=lambda t: t["delta_norm"] ** 2)
    sums = {"delta_sq": ("delta_sq", "sum"), "share": ("share", "sum"), "numel": ("numel", "sum")}
    by_group = block.groupby(["method", "seed", "layer", "group"], as_index=False).agg(**sums)
    by_layer = block.groupby(["method", "seed", "layer"], as_index=False).agg(**sums).assign(
        group="all")
    table = pd.concat([by_group, by_layer], ignore_index=True)
    table["delta_norm"] = table.pop("delta_sq") ** 0.5
    table["layer"] = table["layer"].astype(int)
    return _with_density(table, final_allocation)


def allocation_by_module(final_allocation: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed, module type over all layers): ||Delta||_F, relative norm and share."""
    table = final_allocation.assign(delta_sq=final_allocation["delta_norm"] ** 2,
                                    base_sq=final_allocation["base_norm"] ** 2)
    table = table.groupby(["method", "seed", "module", "group"], as_index=False).agg(
        delta_sq=("delta_sq", "sum"), base_sq=("base_sq", "sum"), share=("share", "sum"),
        numel=("numel", "sum"))
    table["delta_norm"] = table["delta_sq"] ** 0.5
    table["relative_norm"] = table["delta_norm"] / (table["base_sq"] ** 0.5).where(
        table["base_sq"] > 0)
    return _with_density(table.drop(columns=["delta_sq", "base_sq"]), final_allocation)


def module_utility_per_seed(modules: pd.DataFrame) -> pd.DataFrame:
    """Module interventions with gain = acc - acc(base) and
    gain_share = gain / (acc(full) - acc(base)) (NaN when the full update gained nothing)."""
    frames = []
    for _, run in modules.groupby(["method", "seed"]):
        run = run.rename(columns={"avg@n": "accuracy"}).copy()
        base = float(run.loc[run["intervention"] == "base", "accuracy"].iloc[0])
        full = float(run.loc[run["intervention"] == "full", "accuracy"].iloc[0])
        run["gain"] = run["accuracy"] - base
        run["gain_share"] = run["gain"] / (full - base) if full > base else math.nan
        frames.append(run)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- claim 3


def spectra_per_seed(final_spectra: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed, module incl. "all"): spectral numbers averaged over layers."""
    table = final_spectra.assign(
        effective_rank_ratio=final_spectra["effective_rank"]
        / final_spectra[["rows", "cols"]].min(axis=1))
    metrics = spectra_metrics(table)
    per_module = table.groupby(["method", "seed", "module"], as_index=False)[metrics].mean()
    overall = table.groupby(["method", "seed"], as_index=False)[metrics].mean().assign(
        module="all")
    return pd.concat([per_module, overall], ignore_index=True)


def spectra_metrics(table: pd.DataFrame) -> list[str]:
    ks = sorted({int(c.rsplit("_k", 1)[1]) for c in table.columns
                 if c.startswith("energy_share_k")})
    return ["effective_rank", "effective_rank_ratio", "stable_rank",
            *(f"energy_share_k{k}" for k in ks), *(f"norm_ratio_k{k}" for k in ks)]


def rank_k_per_seed(rank_k: pd.DataFrame) -> pd.DataFrame:
    """Rank-k rows with gain_share = (acc - acc(base)) / (acc(full) - acc(base))."""
    frames = []
    for _, run in rank_k.groupby(["method", "seed"]):
        run = run.rename(columns={"avg@n": "accuracy"}).copy()
        base = float(run.loc[run["variant"] == "base", "accuracy"].iloc[0])
        full = float(run.loc[run["variant"] == "full", "accuracy"].iloc[0])
        run["gain_share"] = (run["accuracy"] - base) / (full - base) if full > base else math.nan
        frames.append(run)
    return pd.concat(frames, ignore_index=True)


def long_by_k(table: pd.DataFrame, stems: Sequence[str]) -> pd.DataFrame:
    """Melt wide ``{stem}_k{k}`` columns into rows (columns: id columns, k, and one per stem).

    For plotting: ``long_by_k(alignment, ["left_overlap", "right_overlap"])``.
    """
    pieces = []
    suffixed = [c for c in table.columns if any(c.startswith(f"{s}_k") for s in stems)]
    ids = [c for c in table.columns if c not in suffixed]
    ks = sorted({int(c.rsplit("_k", 1)[1]) for c in suffixed})
    for k in ks:
        piece = table[ids].copy()
        piece["k"] = k
        for stem in stems:
            piece[stem] = table.get(f"{stem}_k{k}", math.nan)
        pieces.append(piece)
    if not pieces:
        raise ValueError(f"no column of the form <stem>_k<k> for stems {list(stems)}")
    return pd.concat(pieces, ignore_index=True)


def alignment_per_seed(alignment: pd.DataFrame, early_steps: dict[tuple[str, int], int]
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (method, seed, step, k): mean overlaps over matrices and the random baseline;
    per (method, seed, step): mean top-1 |cos|."""
    long = long_by_k(alignment, ["left_overlap", "right_overlap"])
    valid = long["k"] <= long[["rows", "cols"]].min(axis=1)
    long["left_random"] = (long["k"] / long["rows"]).where(valid)
    long["right_random"] = (long["k"] / long["cols"]).where(valid)
    keys = ["method", "seed", "step", "fraction"]
    overlap = long.groupby([*keys, "k"], as_index=False)[
        ["left_overlap", "right_overlap", "left_random", "right_random"]].mean()
    top1 = alignment.groupby(keys, as_index=False)[
        ["top1_left_abs_cos", "top1_right_abs_cos"]].mean()
    for table in (overlap, top1):
        table["early"] = [early_steps.get((m, s)) == st for m, s, st in
                          zip(table["method"], table["seed"], table["step"], strict=True)]
    return overlap, top1


def early_step(steps: Sequence[int], early_fraction: float) -> int:
    """The step of a run's early checkpoint, chosen as in the scaling analysis
    (:func:`effopd.analysis.series.early_index`: closest training fraction, ties to
    the earlier)."""
    steps = sorted(int(s) for s in steps)
    return steps[early_index(steps, early_fraction)]


def early_steps_of(norms: pd.DataFrame, early_fraction: float) -> dict[tuple[str, int], int]:
    """The early checkpoint of each run, chosen as in the scaling analysis."""
    return {(method, seed): early_step(run["step"], early_fraction)
            for (method, seed), run in norms.groupby(["method", "seed"])}


# --------------------------------------------------------------------------- claim 4


def embedding_per_seed(cosines: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (method, seed), run in cosines.groupby(["method", "seed"]):
        cosine = run["cosine"].dropna()
        rows.append({"method": method, "seed": seed, "mean_cosine": cosine.mean(),
                     "median_cosine": cosine.median(), "min_cosine": cosine.min(),
                     "mean_shift_norm": run["shift_norm"].mean(), "n_tokens": len(run)})
    return pd.DataFrame(rows, columns=["method", "seed", "mean_cosine", "median_cosine",
                                       "min_cosine", "mean_shift_norm", "n_tokens"])


def projection_sample(projections: pd.DataFrame, max_tokens: int) -> pd.DataFrame:
    """The first seed of each method, at most ``max_tokens`` tokens (a fixed random subset)."""
    if projections.empty:
        return projections
    frames = []
    for _, run in projections.groupby("method"):
        run = run[run["seed"] == run["seed"].min()]
        ids = np.unique(run["token_id"].to_numpy())
        if len(ids) > max_tokens:
            ids = np.random.default_rng(0).choice(ids, size=max_tokens, replace=False)
            run = run[run["token_id"].isin(ids)]
        frames.append(run)
    return sort_methods(pd.concat(frames, ignore_index=True), ["source", "token_id"])


# --------------------------------------------------------------------------- all tables


def analysis_tables(run_dirs: Sequence[str | Path], eval_csvs: Sequence[str | Path],
                    early_fraction: float = EARLY_FRACTION,
                    projection_max_tokens: int = PROJECTION_MAX_TOKENS
                    ) -> dict[str, pd.DataFrame]:
    """Every analysis table (module docstring), by name."""
    norms = load_runs(run_dirs, "update_norms.csv")
    curves = load_eval_curves(eval_csvs)
    sizes = update_size_per_seed(norms, curves)
    scaling = scaling_per_seed(load_runs(run_dirs, "scaling.csv"), norms)
    allocation = _final_rows(load_runs(run_dirs, "module_allocation.csv"))
    spectra = _final_rows(load_runs(run_dirs, "spectra.csv"))
    early = early_steps_of(norms, early_fraction)
    overlap, top1 = alignment_per_seed(load_runs(run_dirs, "alignment.csv"), early)
    cosines = load_runs(run_dirs, "embedding_cosine.csv")
    tables = {
        "update_size_accuracy": update_size_accuracy(sizes),
        "update_efficiency": update_efficiency(sizes),
        "scaling_curves": scaling_curves(scaling),
        "early_recovery": early_recovery(scaling),
        "module_allocation_layers": summarize(allocation_by_layer(allocation),
                                              ["method", "layer", "group"],
                                              ["delta_norm", "share", "param_share",
                                               "share_per_param"], ["layer", "group"]),
        "module_allocation_modules": _module_sorted(summarize(
            allocation_by_module(allocation), ["method", "module", "group"],
            ["delta_norm", "relative_norm", "share", "param_share", "share_per_param"])),
        "module_utility": summarize(module_utility_per_seed(load_runs(run_dirs, "modules.csv")),
                                    ["method", "kind", "intervention", "start", "size"],
                                    ["accuracy", "gain", "gain_share"]),
        "update_spectra": _module_sorted(summarize(spectra_per_seed(spectra),
                                                   ["method", "module"],
                                                   spectra_metrics(spectra))),
        "rank_k_accuracy": summarize(rank_k_per_seed(load_runs(run_dirs, "rank_k.csv")),
                                     ["method", "variant", "k"], ["accuracy", "gain_share"]),
        "subspace_alignment": summarize(overlap, ["method", "step", "k", "early"],
                                        ["fraction", "left_overlap", "right_overlap",
                                         "left_random", "right_random"], ["step", "k"]),
        "top1_alignment": summarize(top1, ["method", "step", "early"],
                                    ["fraction", "top1_left_abs_cos", "top1_right_abs_cos"],
                                    ["step"]),
        "embedding_shift": summarize(embedding_per_seed(cosines), ["method"],
                                     ["mean_cosine", "median_cosine", "min_cosine",
                                      "mean_shift_norm", "n_tokens"]),
        "embedding_projection": projection_sample(load_runs(run_dirs,
                                                            "embedding_projection.csv"),
                                                  projection_max_tokens),
    }
    return tables


def _module_sorted(table: pd.DataFrame) -> pd.DataFrame:
    """Sort by method, then module type in forward-pass order ("all" last)."""
    order = {m: i for i, m in enumerate(MODULE_ORDER)}
    return sort_methods(table.assign(_m=table["module"].map(lambda m: order.get(m, 99))),
                        ["_m"]).drop(columns="_m")


def write_analysis_tables(run_dirs: Sequence[str | Path], eval_csvs: Sequence[str | Path],
                          out_dir: str | Path, early_fraction: float = EARLY_FRACTION,
                          projection_max_tokens: int = PROJECTION_MAX_TOKENS
                          ) -> dict[str, Path]:
    """Write every analysis table as ``<out_dir>/<name>.csv`` and ``.md``."""
    tables = analysis_tables(run_dirs, eval_csvs, early_fraction, projection_max_tokens)
    written = {}
    for name in TABLES:
        written[name] = write_summary_table(tables[name], Path(out_dir) / f"{name}.csv")
        log.info("%s: %d rows", written[name], len(tables[name]))
    return written

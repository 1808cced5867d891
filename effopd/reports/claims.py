"""The claims table: one row per metric that tests a claim of SPEC section 1, with a verdict
and the power behind it.

Metrics, computed per run from committed per-run results
(``.../analysis/<method>/seed<seed>/`` files of ``effopd analyze`` and the
intervention evaluations), OPD against RL:

1.  ``scaling_slope``: OLS slope of accuracy against alpha * ||Delta_T||_F over the
    final update's scaling curve, alpha in [0, 1] (block weights) — accuracy
    bought per unit of parameter change (higher for OPD).
2a. ``mlp_allocation_ratio``: (MLP share of ||Delta_T||^2 over block tensors) /
    (MLP share of block parameters): above 1 means more update per MLP parameter
    than per parameter on average, so parameter count alone gives 1 (higher for OPD).
2b. ``layer_concentration``: 1 - H(q) / log L with q_l proportional to layer l's share of
    ||Delta_T||^2 divided by its share of parameters; 0 = spread evenly per
    parameter, 1 = all in one layer (higher for OPD).
2c. ``mlp_vs_attention_utility``: accuracy of theta_0 + Delta_MLP minus that of
    theta_0 + Delta_attention (the intervention analysis; higher for OPD).
3a. ``topk_energy_share``: share of ||Delta_T||^2 in the top-k singular directions,
    mean over 2-D block weights (higher = more low-rank: higher for OPD).
3b. ``effective_rank_ratio``: Roy-Vetterli effective rank / min(m, n), mean over 2-D
    block weights (lower for OPD).
3c. ``early_alignment``: left top-k subspace overlap of the early update (closest to
    ``early_fraction`` of training, as the scaling analysis) with the final one,
    mean over 2-D block weights (higher for OPD).
4.  ``embedding_shift``: 1 - mean cosine(base, trained) of the input-embedding rows of
    the tokens the final model generated (lower for OPD).

EffOPD against OPD (claim 5) comes from ``effopd_speedup.csv`` unchanged, so both
tables agree to the last digit: ``timescale_steps``, ``timescale_tokens``,
``timescale_cpu_s`` (the time-scale speed-up, whole curves, t over seed pairs: the
primary estimate), ``speedup_steps``, ``speedup_tokens``, ``speedup_cpu_s`` (time to
OPD's plateau target; the speed-up minus 1 is the effect), ``final_accuracy`` (EffOPD
minus OPD, judged for non-inferiority) and ``claim_5``, the two together as the paper
states them (the first speed-up row holds AND final accuracy non-inferior).

What is compared. Claims 1-4 compare the methods ``opd`` and ``rl`` (the primary
comparison: the paper trains both at the same learning rate, and the update's geometry
scales with the step, so a config that answers claims 1-4 trains them at one lr), then
again each ``claims.sensitivity`` pair, for example each algorithm at its own best
learning rate; claim 5 compares EffOPD with OPD at the same learning rate (primary) and
with OPD at its best learning rate (sensitivity). Columns ``comparison`` (primary |
sensitivity) and ``a_lr``, ``b_lr`` (the learning rates the two methods trained at) say
which is which.

Comparison and verdict. OPD and RL runs share no randomness (different prompts and
samples per step), so claims 1-4 compare them unpaired: Welch's 95% interval of
mean(OPD) - mean(RL). Claim 5 uses the time-scale speed-up's t interval over seed
pairs and the time to target's bootstrap over seeds and problems
(:mod:`effopd.reports.speedup`). The verdict rule is
:func:`effopd.reports.stats.verdict` with a minimum effect declared in the config
(``claims.effects``): for claims 1-4 as a fraction of |mean(RL)| (relative), for
``mlp_vs_attention_utility`` in accuracy (absolute), for the speed-up in speed-up
units (0.5: at least 1.5x); final accuracy is non-inferior when the interval's lower
bound lies above -``speedup.non_inferiority_margin``.

Preconditions (rows "0a" and "0b", from OPD's per-problem evaluation files). The claims
are about what OPD learns, so they are only assessable where OPD learned. With r[s, g, i]
the fraction of correct samples of problem i at grid step g of OPD seed s (every
checkpoint scored on the same P problems), a change is estimated paired per problem as
the grand mean of y[s, i] = r[s, last, i] - r[s, g0, i] over n seeds and P problems,
seeds and problems crossed random effects (:func:`effopd.reports.stats.crossed_mean`):
Var = sigma_seeds^2 / n + sigma_problems^2 / P + sigma_residual^2 / (n P), the components
from the two-way ANOVA mean squares (truncated at 0), so training noise, the problems'
spread and the evaluation's sampling noise each count once; degrees of freedom by
Satterthwaite; one seed gives no interval.

0a. ``opd_gain`` (g0 = step 0, the base student): must exceed ``claims.min_opd_gain``
    (the whole interval above it).
0b. ``opd_late_gain`` (g0 = the grid step below the last that is nearest (1 -
    ``speedup.plateau_fraction``) x the last step): OPD is on a plateau when the whole
    interval lies inside +-``claims.max_late_gain`` (neither rising nor falling);
    "does not hold" when it lies wholly outside.

Unless 0a holds, every verdict of claims 1-5 reads "not assessable (OPD's gain not
shown)". Claim 5 is decided at a horizon (SPEC section 1): its time-scale speed-up reads
both curves over the steps both methods ran and names that budget (the common grid's
last step) in its definition; it needs 0a only. The rows about convergence, the time to
OPD's plateau, final-accuracy non-inferiority and the two together, also need 0b: unless
it holds they read "not assessable (OPD's plateau not shown)". An EffOPD whose every
extrapolation was rejected is a valid run (its speed-up in steps is 1), not a reason to
excuse it. A time-scale "holds" whose EffOPD ends significantly below the reference at
the horizon reads "not assessable (time-scale model does not fit ...)"
(:func:`timescale_fit_verdict`). ``statistical_verdict`` keeps the verdict
the interval alone gives. Every checkpoint is scored with the same sampling seed, so
both intervals are conditional on it as well as on the training seeds drawn.

Power. Every row gives the minimum detectable effect at ``claims.power`` (80%) for the
seeds used (Welch: noncentral t; bootstrap: 2.80 x its SE) and the number of seeds
per method that would detect the effect taken as the paper's (``paper_effect``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from effopd.config import block_defaults
from effopd.errors import InputError
from effopd.methods import EFFOPD, OPD, RL, Method, method_label
from effopd.reports.analysis import early_step
from effopd.reports.speedup import (
    SPEEDUP,
    format_lr,
    mde_from_se,
    problem_rates,
    seeds_for_effect_from_se,
    summary_row,
)
from effopd.reports.stats import (
    crossed_mean,
    seeds_for_effect,
    t_interval,
    verdict,
    welch_ci,
    welch_mde,
)
from effopd.tables import ANALYSIS_RUN_FILES, read_table, run_identity


@dataclass(frozen=True)
class Metric:
    claim: str
    key: str
    statement: str
    description: str
    direction: int        # +1: the paper claims the first method's value is higher
    relative: bool = True  # effects as a fraction of |mean of the baseline|


# Keyword defaults of the claims table: the config schema's claims block, read once.
CLAIMS = block_defaults("claims")

SPEC_CLAIMS = {
    "1": "OPD buys more reasoning accuracy per unit of parameter change than RL",
    "2": "OPD concentrates its update on the modules that matter (middle layers, MLP more "
         "than attention); RL spreads it more evenly",
    "3": "OPD's update is more low-rank, and an early checkpoint's dominant subspace already "
         "aligns with the final update's",
    "4": "OPD moves the token embeddings less than RL",
    "5": "EffOPD reaches OPD's final accuracy about 3x faster, with comparable final accuracy",
}

METRICS = [
    Metric("1", "scaling_slope", SPEC_CLAIMS["1"],
           "slope of accuracy vs alpha ||Delta_T||_F, alpha in [0, 1]", +1),
    Metric("2a", "mlp_allocation_ratio", SPEC_CLAIMS["2"],
           "MLP share of ||Delta_T||^2 / MLP share of parameters", +1),
    Metric("2b", "layer_concentration", SPEC_CLAIMS["2"],
           "1 - normalised entropy of per-parameter update share over layers", +1),
    Metric("2c", "mlp_vs_attention_utility", SPEC_CLAIMS["2"],
           "accuracy(theta_0 + Delta_MLP) - accuracy(theta_0 + Delta_attention)", +1,
           relative=False),
    Metric("3a", "topk_energy_share", SPEC_CLAIMS["3"],
           "top-k energy share of Delta_T (2-D block weights)", +1),
    Metric("3b", "effective_rank_ratio", SPEC_CLAIMS["3"],
           "effective rank / min(m, n) of Delta_T (2-D block weights)", -1),
    Metric("3c", "early_alignment", SPEC_CLAIMS["3"],
           "left top-k overlap of the early update with the final one", +1),
    Metric("4", "embedding_shift", SPEC_CLAIMS["4"],
           "1 - mean cosine(base, trained) of generated-token embedding rows", -1),
]

SPEEDUP_UNITS = {"steps": "optimizer steps", "tokens": "generated tokens (incl. validation)",
                 "cpu_s": "CPU seconds"}


# --------------------------------------------------------------------------- metrics


def _run_file(run_dir: Path, name: str) -> pd.DataFrame:
    """A per-run analysis file, validated (:data:`effopd.tables.ANALYSIS_RUN_FILES`)."""
    return read_table(run_dir / name, ANALYSIS_RUN_FILES[name])


#: the per-run analysis files the claims read
CLAIM_FILES = ("update_norms.csv", "module_allocation.csv", "spectra.csv", "alignment.csv",
               "embedding_cosine.csv", "scaling.csv", "modules.csv")


def run_of_dir(run_dir: Path) -> tuple[str, int]:
    """The run (method, seed) whose analysis files lie in ``run_dir``: the identity every
    file the claims read names in its columns; refused when two of them disagree."""
    runs = {name: run_identity(_run_file(run_dir, name), run_dir / name)
            for name in CLAIM_FILES}
    if len(set(runs.values())) > 1:
        shown = ", ".join(f"{name}: {m} seed {s}" for name, (m, s) in runs.items())
        raise InputError(f"{run_dir}: its files name different runs ({shown})")
    return runs[CLAIM_FILES[0]]


def _final(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["step"] == table["step"].max()]


def scaling_slope(run_dir: Path) -> float:
    scaling = _run_file(run_dir, "scaling.csv")
    final = scaling[(scaling["kind"] == "final") & (scaling["alpha"] <= 1 + 1e-12)]
    norm = float(_final(_run_file(run_dir, "update_norms.csv"))["block_norm"].iloc[0])
    x = final["alpha"].to_numpy(dtype=float) * norm
    y = final["avg@n"].to_numpy(dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def _block_allocation(run_dir: Path) -> pd.DataFrame:
    table = _final(_run_file(run_dir, "module_allocation.csv"))
    table = table[table["layer"].notna()]
    return table.assign(energy=table["delta_norm"] ** 2)


def mlp_allocation_ratio(run_dir: Path) -> float:
    table = _block_allocation(run_dir)
    mlp = table["group"] == "mlp"
    return float((table.loc[mlp, "energy"].sum() / table["energy"].sum())
                 / (table.loc[mlp, "numel"].sum() / table["numel"].sum()))


def layer_concentration(run_dir: Path) -> float:
    by_layer = _block_allocation(run_dir).groupby("layer")[["energy", "numel"]].sum()
    if len(by_layer) < 2:
        return math.nan
    density = (by_layer["energy"] / by_layer["energy"].sum()) \
        / (by_layer["numel"] / by_layer["numel"].sum())
    q = (density / density.sum()).to_numpy()
    entropy = -float(np.sum(q[q > 0] * np.log(q[q > 0])))
    return 1.0 - entropy / math.log(len(q))


def mlp_vs_attention_utility(run_dir: Path) -> float:
    modules = _run_file(run_dir, "modules.csv").set_index("intervention")["avg@n"]
    return float(modules["mlp"] - modules["attention"])


def _final_matrices(run_dir: Path) -> pd.DataFrame:
    return _final(_run_file(run_dir, "spectra.csv"))


def topk_energy_share(run_dir: Path, k: int) -> float:
    spectra = _final_matrices(run_dir)
    column = f"energy_share_k{k}"
    if column not in spectra:
        raise ValueError(f"{run_dir / 'spectra.csv'}: no {column}; add {k} to "
                         "analysis.spectra_ks or change claims.k")
    return float(spectra[column].mean())


def effective_rank_ratio(run_dir: Path) -> float:
    spectra = _final_matrices(run_dir)
    return float((spectra["effective_rank"] / spectra[["rows", "cols"]].min(axis=1)).mean())


def early_alignment(run_dir: Path, k: int, early_fraction: float) -> float:
    steps = _run_file(run_dir, "update_norms.csv")["step"]
    table = _run_file(run_dir, "alignment.csv")
    column = f"left_overlap_k{k}"
    if column not in table:
        raise ValueError(f"{run_dir / 'alignment.csv'}: no {column}; add {k} to "
                         "analysis.alignment_ks or change claims.k")
    return float(table.loc[table["step"] == early_step(steps, early_fraction), column].mean())


def embedding_shift(run_dir: Path) -> float:
    return 1.0 - float(_run_file(run_dir, "embedding_cosine.csv")["cosine"].mean())


def per_seed_values(run_dirs: list[str | Path], k: int, early_fraction: float,
                    methods: Sequence[str] = (OPD, RL)) -> pd.DataFrame:
    """One row per (metric, method, seed) for the runs of ``methods`` (the methods that
    :func:`claim_comparisons` compares)."""
    rows = []
    for run_dir in map(Path, run_dirs):
        method, seed = run_of_dir(run_dir)
        if method not in methods:
            continue
        values = {"scaling_slope": scaling_slope(run_dir),
                  "mlp_allocation_ratio": mlp_allocation_ratio(run_dir),
                  "layer_concentration": layer_concentration(run_dir),
                  "mlp_vs_attention_utility": mlp_vs_attention_utility(run_dir),
                  "topk_energy_share": topk_energy_share(run_dir, k),
                  "effective_rank_ratio": effective_rank_ratio(run_dir),
                  "early_alignment": early_alignment(run_dir, k, early_fraction),
                  "embedding_shift": embedding_shift(run_dir)}
        rows += [{"metric": key, "method": method, "seed": seed, "value": value}
                 for key, value in values.items()]
    return pd.DataFrame(rows, columns=["metric", "method", "seed", "value"])


# --------------------------------------------------------------------------- rows


def claim_comparisons(sensitivity: Sequence[Mapping[str, str]] = ()
                      ) -> list[tuple[str, str, str]]:
    """The (OPD method, RL method, role) pairs that claims 1-4 compare: the primary
    ``(opd, rl)``, then each ``claims.sensitivity`` pair ``{opd, rl}`` (for example each
    algorithm at its own best learning rate)."""
    return [(OPD, RL, "primary"),
            *((pair["opd"], pair["rl"], "sensitivity") for pair in sensitivity)]


def comparison_row(metric: Metric, opd: pd.Series, rl: pd.Series, effect: dict[str, float],
                   power: float = 0.8, a: str = OPD, b: str = RL) -> dict[str, Any]:
    """One claims row: Welch interval of OPD - RL (the runs of methods ``a`` and ``b``),
    verdict against the minimum effect, minimum detectable effect and seeds needed for the
    paper's effect."""
    welch = welch_ci(opd, rl)
    scale = abs(float(rl.mean())) if metric.relative else 1.0
    min_effect = effect["min_effect"] * scale
    paper_effect = effect["paper_effect"] * scale
    mde = welch_mde(welch.se, welch.df, power) if welch.se > 0 else math.nan
    return {
        "claim": metric.claim, "metric": metric.key, "paper_statement": metric.statement,
        "definition": metric.description,
        "claimed_direction": "OPD higher" if metric.direction > 0 else "OPD lower",
        "a": a, "b": b, "a_mean": float(opd.mean()), "b_mean": float(rl.mean()),
        "estimate": welch.difference, "ci95_low": welch.low, "ci95_high": welch.high,
        "effect_scale": "fraction of |RL mean|" if metric.relative else "absolute",
        "min_effect": min_effect, "paper_effect": paper_effect, "mde80": mde,
        "mde80_below_paper_effect": bool(mde < paper_effect) if not math.isnan(mde) else False,
        "seeds_for_paper_effect": seeds_for_effect(paper_effect, float(opd.std(ddof=1)),
                                                   float(rl.std(ddof=1)), power),
        "n_a": welch.n_a, "n_b": welch.n_b, "test": "Welch t (unpaired seeds)",
        "verdict": verdict(welch.low, welch.high, metric.direction, min_effect),
    }


def _speedup_row(row: pd.Series, column: str, definition: str, n: int, mde: float,
                 test: str, effect: dict[str, float], metric: str | None = None,
                 reference: str = OPD) -> dict[str, Any]:
    """One claim-5 speed-up row from the summary row's ``column`` (its interval and SE);
    the effect is the speed-up minus 1; ``metric`` (default ``column``) names the row and
    ``reference`` the method EffOPD is compared with."""
    value, low, high = (float(row[column]), float(row[f"{column}_ci95_low"]),
                        float(row[f"{column}_ci95_high"]))
    se = float(row[f"{column}_se"])
    return {
        "claim": "5", "metric": metric or column, "paper_statement": SPEC_CLAIMS["5"],
        "definition": definition, "claimed_direction": "speed-up above 1", "a": EFFOPD,
        "b": reference, "a_mean": math.nan, "b_mean": math.nan, "estimate": value,
        "ci95_low": low, "ci95_high": high, "effect_scale": "speed-up - 1",
        "min_effect": effect["min_effect"], "paper_effect": effect["paper_effect"],
        "mde80": mde, "mde80_below_paper_effect": bool(mde < effect["paper_effect"]),
        "seeds_for_paper_effect": seeds_for_effect_from_se(se, n, effect["paper_effect"]),
        "n_a": n, "n_b": n, "test": test,
        "verdict": verdict(low - 1, high - 1, +1, effect["min_effect"]),
    }


def speedup_rows(speedup: pd.DataFrame, effect: dict[str, float],
                 non_inferiority_margin: float, methods: Mapping[str, Method] | None = None
                 ) -> list[dict[str, Any]]:
    """Claim 5's rows, copied from the speed-up table's EffOPD summary row: the time-scale
    speed-up in each unit (the primary estimate: it reads the whole curves and has the
    power, ``benchmarks/speedup_calibration.py``; geometric mean over seed pairs, t
    interval on log s with n - 1 df, MDE by the noncentral t at that df on the
    delta-method SE), when the table has it; the time to OPD's plateau target in each
    unit (bootstrap); final-accuracy non-inferiority; both together (on the time-scale
    speed-up in steps when present)."""
    row = summary_row(speedup)
    n = int(row["n_pairs"])
    rows = timescale_rows(row, effect)
    for unit, label in SPEEDUP_UNITS.items():
        column = f"speedup_{unit}"
        rows.append(_speedup_row(
            row, column, f"speed-up to OPD's plateau in {label} (EffOPD / OPD, median over "
            f"seeds; reached {row['reached']})", n, mde_from_se(float(row[f"{column}_se"])),
            "bootstrap over seeds and problems (paired seeds)", effect))
    diff, low, high = (float(row["final_accuracy_diff"]),
                       float(row["final_accuracy_diff_ci95_low"]),
                       float(row["final_accuracy_diff_ci95_high"]))
    se = float(row["final_accuracy_diff_se"])
    mde = mde_from_se(se)
    rows.append({
        "claim": "5", "metric": "final_accuracy", "paper_statement": SPEC_CLAIMS["5"],
        "definition": "EffOPD final accuracy - OPD final accuracy (non-inferiority)",
        "claimed_direction": f"above -{non_inferiority_margin:g}", "a": EFFOPD, "b": OPD,
        "a_mean": math.nan, "b_mean": math.nan, "estimate": diff, "ci95_low": low,
        "ci95_high": high, "effect_scale": "absolute",
        "min_effect": -non_inferiority_margin, "paper_effect": non_inferiority_margin,
        "mde80": mde, "mde80_below_paper_effect": bool(mde < non_inferiority_margin),
        "seeds_for_paper_effect": seeds_for_effect_from_se(se, n, non_inferiority_margin),
        "n_a": n, "n_b": n, "test": "paired per seed and problem; t, seeds x problems crossed",
        "verdict": verdict(low, high, +1, -non_inferiority_margin),
    })
    rows.append(combined_claim5(rows[0], rows[-1]))
    if "effopd_vs_best_lr_opd" in set(speedup["comparison"]):
        best = summary_row(speedup, "effopd_vs_best_lr_opd")
        rows += timescale_rows(best, effect, suffix="_vs_best_lr",
                               reference=str(best["reference"]), methods=methods)
    return rows


def timescale_rows(row: pd.Series, effect: dict[str, float], suffix: str = "",
                   reference: str = OPD, methods: Mapping[str, Method] | None = None
                   ) -> list[dict[str, Any]]:
    """Claim 5's time-scale rows (one per unit the summary ``row`` has) of EffOPD against
    ``reference``: geometric mean over seed pairs, t interval on log s with n - 1 df, MDE
    by the noncentral t at that df on the delta-method SE; metric ``timescale_<unit>`` plus
    ``suffix`` (``_vs_best_lr``: against OPD at its best learning rate). The definition
    names the horizon (:func:`horizon_of`): the estimate reads the curves up to it."""
    rows = []
    horizon = horizon_of(row)
    for unit, label in SPEEDUP_UNITS.items():
        column = f"timescale_{unit}"
        if column not in row or pd.isna(row[column]):
            continue
        pairs = int(row[f"{column}_n_pairs"])
        mde = welch_mde(float(row[f"{column}_se"]), pairs - 1) if pairs > 1 else math.nan
        name = method_label(reference, methods)
        rows.append(_speedup_row(
            row, column, f"time-scale speed-up in {label} at the horizon of {horizon} "
            f"(EffOPD's curve at x = {name}'s at s x over the steps both ran; geometric mean "
            f"over {pairs} seed pairs)", pairs, mde,
            "t over seed pairs, log scale (paired seeds)", effect,
            metric=column + suffix, reference=reference))
        rows[-1]["verdict"] = timescale_fit_verdict(rows[-1]["verdict"], row, name)
    return rows


def timescale_fit_verdict(verdict_: str, row: pd.Series, reference: str) -> str:
    """A time-scale "holds" checked against the model it rests on: EffOPD's curve is
    y_t(x) = F_r(s x), so with s > 1 and F_r increasing EffOPD ends at or above the
    reference at the horizon. When the final-accuracy difference (EffOPD - reference,
    ``final_accuracy_diff_ci95_high``) lies wholly below 0 the fit matched only a stretch
    of the curves (e.g. a flat EffOPD against the dip of an overshooting reference's first
    steps) and the verdict is "not assessable (...)" instead of "holds"."""
    high = row.get("final_accuracy_diff_ci95_high", math.nan)
    if verdict_ == "holds" and not pd.isna(high) and float(high) < 0:
        return (f"not assessable (time-scale model does not fit: EffOPD ends below "
                f"{reference}, upper bound {float(high):.3g})")
    return verdict_


def horizon_of(row: pd.Series) -> str:
    """The training budget a speed-up summary ``row`` reads the curves over: its common
    grid's last step (``step N``), or "the last common step" for a table without ``grid``."""
    grid = str(row.get("grid", "")).split()
    return f"step {int(float(grid[-1]))}" if grid and grid[-1] != "nan" else \
        "the last common step"


def combined_claim5(speedup: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
    """Claim 5 as the paper states it: the speed-up in steps holds AND final accuracy is
    non-inferior ("holds"); either one not holding makes it "does not hold"."""
    verdicts = {speedup["verdict"], final["verdict"]}
    combined = ("holds" if verdicts == {"holds"} else
                "does not hold" if "does not hold" in verdicts else "inconclusive")
    return {**{key: math.nan for key in speedup}, "claim": "5", "metric": "claim_5",
            "paper_statement": SPEC_CLAIMS["5"],
            "definition": "speed-up in steps above the minimum AND final accuracy non-inferior",
            "claimed_direction": "both", "a": EFFOPD, "b": OPD, "effect_scale": "",
            "mde80_below_paper_effect": speedup["mde80_below_paper_effect"]
            and final["mde80_below_paper_effect"],
            "seeds_for_paper_effect": max((r["seeds_for_paper_effect"] for r in (speedup, final)
                                           if r["seeds_for_paper_effect"] is not None),
                                          default=None),
            "n_a": speedup["n_a"], "n_b": speedup["n_b"], "test": "both rows above",
            "verdict": combined}


def paired_difference(rates: list[np.ndarray], g0: int, g1: int
                      ) -> tuple[float, float, float]:
    """(estimate, standard error, degrees of freedom) of mean_{s,i} (r[s, g1, i] - r[s, g0, i])
    for ``rates[s]`` of shape (grid steps, problems): seeds and problems crossed
    (:func:`effopd.reports.stats.crossed_mean`). The error is NaN with fewer than two seeds."""
    return crossed_mean(np.stack([r[g1] - r[g0] for r in rates]))


def _precondition_row(key: str, definition: str, direction: str, n: int, estimate: float,
                      se: float, df: float, threshold: float, verdict_: str,
                      low: float, high: float) -> dict[str, Any]:
    return {"claim": "0a" if key == "opd_gain" else "0b", "metric": key,
            "paper_statement": "precondition: OPD learns and ends on a plateau",
            "definition": definition, "claimed_direction": direction, "a": OPD, "b": "",
            "a_mean": estimate, "b_mean": math.nan, "estimate": estimate, "ci95_low": low,
            "ci95_high": high, "effect_scale": "absolute", "min_effect": threshold,
            "paper_effect": math.nan, "mde80": mde_from_se(se),
            "mde80_below_paper_effect": False, "seeds_for_paper_effect": None, "n_a": n,
            "n_b": 0, "test": "paired per problem; t, problems and seeds (Satterthwaite)",
            "verdict": verdict_}


def plateau_verdict(low: float, high: float, margin: float) -> str:
    """"holds" when [low, high] lies inside (-margin, margin), "does not hold" when it lies
    wholly outside it, "inconclusive" otherwise or without an interval."""
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if -margin < low and high < margin:
        return "holds"
    if low >= margin or high <= -margin:
        return "does not hold"
    return "inconclusive"


def gap_share(gain: float, low: float, high: float, base: float, teacher: float
              ) -> tuple[float, float, float]:
    """The share of the teacher-student gap that OPD closed, ``gain / (teacher - base)``,
    with the gain's interval divided by the same gap (the gap is taken as known: its own
    sampling error, about sqrt(2) x a checkpoint's SE, is not propagated). NaN when the
    teacher is not above the base."""
    gap = teacher - base
    if not gap > 0:
        return math.nan, math.nan, math.nan
    return gain / gap, low / gap, high / gap


def precondition_rows(runs: list[tuple[np.ndarray, np.ndarray]], min_gain: float,
                      max_late_gain: float, plateau_fraction: float,
                      teacher_accuracy: float | None = None) -> list[dict[str, Any]]:
    """Rows 0a (``opd_gain``) and 0b (``opd_late_gain``) of the module docstring from OPD's
    runs, each ``(steps, rates)`` as :func:`effopd.reports.speedup.problem_rates` reads
    them; only the grid steps every run has are used, and step 0 must be one of them.
    With the teacher's accuracy on the same benchmark, row 0a also states the share of the
    teacher-student gap OPD closed (:func:`gap_share`; base = mean step-0 accuracy)."""
    grid = sorted(set.intersection(*(set(int(x) for x in steps) for steps, _ in runs)))
    if not grid or grid[0] != 0 or len(grid) < 3:
        raise ValueError(f"OPD's runs share the grid steps {grid}: the preconditions need "
                         "step 0 (the base student) and at least two later checkpoints")
    rates = [r[[list(steps).index(g) for g in grid]] for steps, r in runs]
    last = len(grid) - 1
    late = min(range(1, last), key=lambda g: abs(grid[g] - (1 - plateau_fraction) * grid[-1]))
    n = len(rates)
    gain, se, df = paired_difference(rates, 0, last)
    low, high = t_interval(gain, se, df)
    definition = f"OPD final accuracy (step {grid[last]}) - base student's (step 0)"
    share = (math.nan,) * 3
    if teacher_accuracy is not None:
        base = float(np.mean([r[0].mean() for r in rates]))
        share = gap_share(gain, low, high, base, teacher_accuracy)
        definition += (f"; {share[0]:.0%} [{share[1]:.0%}, {share[2]:.0%}] of the "
                       f"teacher-student gap ({base:.1%} -> teacher {teacher_accuracy:.1%})"
                       if math.isfinite(share[0]) else
                       f"; teacher {teacher_accuracy:.1%} not above the base {base:.1%}")
    rows = [{**_precondition_row(
        "opd_gain", definition, f"above {min_gain:g}", n, gain, se, df, min_gain,
        verdict(low, high, +1, min_gain), low, high),
        "gap_closed": share[0], "gap_closed_low": share[1], "gap_closed_high": share[2]}]
    drift, se, df = paired_difference(rates, late, last)
    low, high = t_interval(drift, se, df)
    rows.append(_precondition_row(
        "opd_late_gain", f"OPD accuracy change from step {grid[late]} to step {grid[last]}",
        f"within +-{max_late_gain:g}", n, drift, se, df, max_late_gain,
        plateau_verdict(low, high, max_late_gain), low, high))
    return rows


def needs_plateau(row: dict[str, Any]) -> bool:
    """Whether a claims row is about convergence (SPEC section 1): claim 5's time to OPD's
    plateau, final-accuracy non-inferiority and the two together. The time-scale speed-up
    is read at a horizon (the budget both methods ran) and needs no plateau."""
    return row["claim"] == "5" and not str(row["metric"]).startswith("timescale_")


def gate_verdicts(rows: list[dict[str, Any]], preconditions: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
    """Claims 1-5 are "not assessable" unless OPD learned (0a holds); claim 5's rows about
    convergence (:func:`needs_plateau`) also need OPD on a plateau (0b holds), while its
    time-scale speed-up is decided at its horizon. ``statistical_verdict`` keeps the
    interval's verdict."""
    learned, plateau = (row["verdict"] == "holds" for row in preconditions)
    gated = []
    for row in rows:
        reason = ("not assessable (OPD's gain not shown)" if not learned else
                  "not assessable (OPD's plateau not shown)"
                  if needs_plateau(row) and not plateau else None)
        gated.append({**row, "statistical_verdict": row["verdict"],
                      "verdict": reason or row["verdict"]})
    return gated


def comparison_columns(table: pd.DataFrame, methods: Mapping[str, Method] | None
                       ) -> pd.DataFrame:
    """``table`` with, after column ``b``, ``comparison`` (primary | sensitivity: claim 5
    against OPD at its best learning rate, and every ``claims.sensitivity`` pair) and
    ``a_lr``, ``b_lr``: the peak learning rates methods ``a`` and ``b`` trained at
    (:attr:`effopd.methods.Method.trains_at`; NaN when not known or no method)."""
    def lr(name: Any) -> float:
        method = (methods or {}).get(name) if isinstance(name, str) else None
        return float(method.trains_at) if method and method.trains_at is not None \
            else math.nan

    table = table.copy()
    if "comparison" not in table:
        table["comparison"] = "primary"
    table["comparison"] = table["comparison"].fillna("primary")
    table["a_lr"] = table["a"].map(lr)
    table["b_lr"] = table["b"].map(lr)
    columns = [c for c in table.columns if c not in ("comparison", "a_lr", "b_lr")]
    at = columns.index("b") + 1
    return table[columns[:at] + ["comparison", "a_lr", "b_lr"] + columns[at:]]


def claims_table(values: pd.DataFrame, speedup: pd.DataFrame | None,
                 effects: dict[str, dict[str, float]], power: float = CLAIMS["power"],
                 non_inferiority_margin: float = SPEEDUP["non_inferiority_margin"],
                 opd_runs: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 min_opd_gain: float = CLAIMS["min_opd_gain"],
                 max_late_gain: float = CLAIMS["max_late_gain"],
                 plateau_fraction: float = SPEEDUP["plateau_fraction"],
                 teacher_accuracy: float | None = None,
                 methods: Mapping[str, Method] | None = None,
                 sensitivity: Sequence[Mapping[str, str]] = ()) -> pd.DataFrame:
    """The claims table (module docstring): the preconditions when OPD's per-problem runs
    are given, then one row per metric of the primary comparison, claim 5, and claims 1-4
    again for each ``sensitivity`` pair (:func:`claim_comparisons`), gated by them (the
    sensitivity rows by the primary OPD's preconditions). ``methods``: the declared
    methods (labels; learning rates, :func:`comparison_columns`)."""
    blocks: dict[str, list[dict[str, Any]]] = {"primary": [], "sensitivity": []}
    for a, b, role in claim_comparisons(sensitivity):
        for metric in METRICS:
            data = values[values["metric"] == metric.key]
            opd = data.loc[data["method"] == a, "value"].astype(float)
            rl = data.loc[data["method"] == b, "value"].astype(float)
            if opd.empty or rl.empty:
                raise ValueError(f"claims: no analysed runs of {a if opd.empty else b} "
                                 f"(compared {role}ly on {metric.key})")
            blocks[role].append({**comparison_row(metric, opd, rl, effects[metric.key], power,
                                                  a, b), "comparison": role})
    rows = blocks["primary"]
    if speedup is not None and not speedup.empty:
        rows += [{**row, "comparison": "sensitivity" if row["metric"].endswith("_vs_best_lr")
                  else "primary"}
                 for row in speedup_rows(speedup, effects["speedup"], non_inferiority_margin,
                                         methods)]
    rows += blocks["sensitivity"]
    if opd_runs is None:
        return comparison_columns(pd.DataFrame(rows), methods)
    preconditions = precondition_rows(opd_runs, min_opd_gain, max_late_gain, plateau_fraction,
                                      teacher_accuracy)
    preconditions = [{**row, "statistical_verdict": row["verdict"]} for row in preconditions]
    return comparison_columns(pd.DataFrame(preconditions + gate_verdicts(rows, preconditions)),
                              methods)


def claims_markdown(table: pd.DataFrame, methods: Mapping[str, Method] | None = None
                    ) -> pd.DataFrame:
    """The Markdown view: what is compared (role; methods with their learning rates),
    estimate with interval, minimum effect, power, verdict."""
    def number(x: float) -> str:
        return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"

    def side(name: Any, lr: float) -> str:
        if not isinstance(name, str) or not name:
            return ""
        return method_label(name, methods) + (f" (lr {format_lr(lr)})" if math.isfinite(lr)
                                              else "")

    compared = [f"{role}: " + " vs ".join(filter(None, (side(a, la), side(b, lb))))
                for role, a, b, la, lb in zip(table["comparison"], table["a"], table["b"],
                                              table["a_lr"], table["b_lr"], strict=True)]
    return pd.DataFrame({
        "claim": table["claim"], "compared": compared, "metric": table["definition"],
        "claimed": table["claimed_direction"],
        "estimate [95% CI]": [f"{number(e)} [{number(lo)}, {number(hi)}]" for e, lo, hi in
                              zip(table["estimate"], table["ci95_low"], table["ci95_high"],
                                  strict=True)],
        "min effect": table["min_effect"].map(number),
        "MDE (80%)": table["mde80"].map(number),
        "paper effect": table["paper_effect"].map(number),
        "seeds for paper effect": table["seeds_for_paper_effect"].map(
            lambda n: "" if n is None or pd.isna(n) else str(int(n))),
        "seeds": [f"{a} vs {b}" if b else f"{a}"
                  for a, b in zip(table["n_a"], table["n_b"], strict=True)],
        "verdict": table["verdict"],
    })


def write_claims(run_dirs: list[str | Path], speedup_csv: str | Path | None,
                 out_csv: str | Path, k: int, early_fraction: float,
                 claims: dict[str, Any], non_inferiority_margin: float,
                 opd_evals: list[str | Path] | None = None,
                 plateau_fraction: float = SPEEDUP["plateau_fraction"],
                 teacher_accuracy: float | None = None,
                 methods: Mapping[str, Method] | None = None) -> pd.DataFrame:
    """Write claims.csv (every column) and claims.md (:func:`claims_markdown`)."""
    from effopd.io import atomic_path, atomic_write_text, markdown_table

    speedup = read_table(speedup_csv) if speedup_csv else None
    opd_runs = [problem_rates(path) for path in opd_evals] if opd_evals else None
    claims = block_defaults("claims", claims)
    sensitivity = claims["sensitivity"]
    compared = sorted({m for a, b, _ in claim_comparisons(sensitivity) for m in (a, b)})
    table = claims_table(per_seed_values(run_dirs, k, early_fraction, compared), speedup,
                         claims["effects"], claims["power"], non_inferiority_margin,
                         opd_runs, claims["min_opd_gain"], claims["max_late_gain"],
                         plateau_fraction, teacher_accuracy, methods, sensitivity)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(Path(out_csv).with_suffix(".md"),
                      markdown_table(claims_markdown(table, methods)) + "\n")
    return table

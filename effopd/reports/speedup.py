"""EffOPD's speed-up over OPD (SPEC section 1, claim 5): the one estimator of every table.

Definitions (knobs in the config's ``speedup`` block; choices in config/README.md):

- **Grid.** Runs are compared on the checkpoint steps that every compared run was
  evaluated at, step 0 (the shared base model) included. EffOPD's extra
  power-of-two checkpoints stay in the curves but not in the estimator, so no
  method gets more looks at its noise.
- **Curve.** Accuracy at step g is the mean over problems of each problem's
  correct rate c_pg / n. Each run's curve is replaced by its isotonic
  (non-decreasing least-squares, pool-adjacent-violators) fit, read piecewise
  linearly between grid steps: a monotone fit pools noisy neighbours, so a
  lucky single checkpoint cannot make a run "arrive" early.
- **Target.** An OPD run's plateau P is the mean of its fitted curve over the
  last ``plateau_fraction`` of the grid steps (at least one); where it reaches
  its plateau is a_0 + ``target_fraction`` (P - a_0), a_0 its fitted base
  accuracy. With the default 0.9 this is the usual "time to 90% of the
  asymptote": the time to reach P itself (fraction 1) is set by noise whenever
  both methods end on the same plateau, since a saturating curve approaches it
  with vanishing slope. A pair's target tau is the mean of that level over the
  OPD runs of the *other* pairs (leave the pair out): a target set by the
  pair's own OPD run shares its noise and favours it (simulated identical
  methods then gave a median speed-up of 0.85, not 1).
- **Time to target.** T(tau) = inf{t : f(t) >= tau} on the piecewise-linear fit.
  A run whose fit stays below tau is **censored**: T > t_last, and nothing is
  imputed. Cost at T in three units: optimizer steps; generated tokens
  (training responses plus EffOPD's validation rollouts, cumulative, linear
  between steps); and CPU seconds of the training process and its grading
  workers (uncontended compute, unlike wall time on a shared machine).
- **Pair speed-up.** S = cost_ref(T_ref) / cost_trt(T_trt). When only EffOPD is
  censored, S < cost_ref(T_ref) / cost_trt(t_last) is all that is known (its
  bound); when only OPD is, S > cost_ref(t_last) / cost_trt(T_trt).
- **Pairs.** (OPD seed s, EffOPD seed s): the two runs of a seed draw the same
  prompts and rollout seeds (common random numbers), so they are paired.
  **Null control:** (OPD seed s, OPD seed s'), s' the next seed (cyclic): the
  same estimator on two runs of the same method; its interval must contain 1.
- **Summary.** The median over pairs: a pair whose EffOPD run is censored ranks
  below every value, one whose OPD run is censored above every value, one in
  which neither reaches the target counts as a tie (1); pairs with no gain to
  reach are left out.
- **Interval.** A two-level bootstrap: each replicate resamples the problems
  (one draw of problem indices shared by every run, since all runs are scored
  on the same problems) and the pairs (seeds), refits every curve and recomputes
  the median; percentile interval. A lower bound among censored replicates is
  reported as 0 (no positive lower bound).
- **Final accuracy.** EffOPD's last-checkpoint accuracy minus OPD's, mean over
  pairs and problems of the per-problem differences, seeds (pairs) and problems
  crossed (:func:`effopd.reports.stats.crossed_mean`: each noise source counted
  once; resampling problems and pairs would count the sampling noise 2-3 times,
  shrink the seeds' part by (S - 1) / S and use normal quantiles), with a t
  interval; non-inferior when the lower bound is above -``non_inferiority_margin``.
  The null control's pairs are cyclic (seed s against s + 1), so its mean
  final-accuracy difference is 0 by construction and gets no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from effopd.metrics import problems_csv
from effopd.reports.runs import run_of
from effopd.reports.stats import Z_POWER_80, crossed_mean, percentile_interval, t_interval

UNITS = ("steps", "tokens", "cpu_s")


@dataclass(frozen=True)
class Run:
    """One training run's evaluation on a checkpoint grid and its cumulative costs.

    ``rates``: (n_steps, n_problems) per-problem correct rate at each evaluated step;
    ``log_steps`` and ``costs[unit]``: cumulative cost after each training step
    (step 0 = cost 0), for interpolation at fractional steps.
    """

    method: str
    seed: int
    steps: np.ndarray
    rates: np.ndarray
    log_steps: np.ndarray = field(default_factory=lambda: np.zeros(1))
    costs: dict[str, np.ndarray] = field(default_factory=dict)

    def on_grid(self, grid: np.ndarray) -> Run:
        rows = [int(np.flatnonzero(self.steps == g)[0]) for g in grid]
        return Run(self.method, self.seed, grid, self.rates[rows], self.log_steps, self.costs)

    def cost(self, unit: str, step: float) -> float:
        if unit == "steps":
            return float(step)
        if unit not in self.costs:
            return math.nan
        return float(np.interp(step, self.log_steps, self.costs[unit]))


def isotonic(values: Sequence[float]) -> np.ndarray:
    """Non-decreasing least-squares fit (pool adjacent violators, equal weights)."""
    blocks: list[list[float]] = []  # [sum, count]
    for value in map(float, values):
        blocks.append([value, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    return np.concatenate([np.full(int(c), s / c) for s, c in blocks])


def crossing(steps: np.ndarray, fitted: np.ndarray, target: float) -> float:
    """inf{t : f(t) >= target} for the piecewise-linear f through (steps, fitted); inf if none."""
    above = np.flatnonzero(fitted >= target - 1e-12)
    if above.size == 0:
        return math.inf
    i = int(above[0])
    if i == 0:
        return float(steps[0])
    x0, x1, y0, y1 = steps[i - 1], steps[i], fitted[i - 1], fitted[i]
    return float(x0 + (x1 - x0) * (target - y0) / (y1 - y0))


def plateau(steps: np.ndarray, fitted: np.ndarray, fraction: float) -> float:
    """Mean of the fitted curve over the last ``fraction`` of the grid steps (at least one)."""
    last = max(1, math.ceil(fraction * len(steps)))
    return float(np.mean(fitted[-last:]))


def run_target(steps: np.ndarray, curve: np.ndarray, plateau_fraction: float,
               target_fraction: float) -> float:
    """Where one OPD run reaches its plateau: a_0 + target_fraction (P - a_0), from its fit."""
    fit = isotonic(curve)
    return float(fit[0] + target_fraction * (plateau(steps, fit, plateau_fraction) - fit[0]))


def pair_speedup(ref: Run, ref_curve: np.ndarray, trt: Run, trt_curve: np.ndarray,
                 target: float) -> dict:
    """Both runs' time to ``target`` and the speed-up in every unit.

    ``*_curve`` are the runs' accuracies on their (common) grid. ``status``: ``both``
    reached (a value); ``ref only`` (the treatment is censored: -inf, known only to be
    below ``bound``); ``trt only`` (+inf, known only to be above ``bound``); ``neither``
    (no value; a tie, 1, in the median); ``no gain`` (the target is not above the base
    accuracy: no value, left out).
    """
    ref_fit, trt_fit = isotonic(ref_curve), isotonic(trt_curve)
    t_ref, t_trt = crossing(ref.steps, ref_fit, target), crossing(trt.steps, trt_fit, target)
    if target <= max(ref_fit[0], trt_fit[0]) + 1e-12:
        status = "no gain"
    else:
        status = {(True, True): "both", (True, False): "ref only", (False, True): "trt only",
                  (False, False): "neither"}[(math.isfinite(t_ref), math.isfinite(t_trt))]
    out = {"target_accuracy": target, "ref_final_accuracy": float(ref_curve[-1]),
           "trt_final_accuracy": float(trt_curve[-1]), "ref_steps_to_target": t_ref,
           "trt_steps_to_target": t_trt, "status": status,
           "trt_reached": status in ("both", "trt only")}
    last_ref, last_trt = float(ref.steps[-1]), float(trt.steps[-1])
    for unit in UNITS:
        value = bound = math.nan
        if status == "both":
            value = ref.cost(unit, t_ref) / trt.cost(unit, t_trt)
        elif status == "ref only":
            value, bound = -math.inf, ref.cost(unit, t_ref) / trt.cost(unit, last_trt)
        elif status == "trt only":
            value, bound = math.inf, ref.cost(unit, last_ref) / trt.cost(unit, t_trt)
        out[f"speedup_{unit}"], out[f"speedup_{unit}_bound"] = value, bound
    return out


def _rank_value(row: dict, column: str) -> float:
    """The value a pair takes in the median: its speed-up, +-inf when one run is censored,
    1 (a tie) when neither reaches the target, NaN (left out) when there is no gain."""
    return 1.0 if row["status"] == "neither" else row[column]


def censored_median(values: Sequence[float]) -> float:
    """Median with censored values as -inf (the treatment never reached: below every value)
    or +inf (the reference never reached: above every value); NaNs dropped. For an even
    count, the mean of the two middle values (+-inf if one is infinite; 1 for -inf and +inf).
    """
    array = np.sort(np.asarray([v for v in values if not math.isnan(v)], dtype=float))
    if array.size == 0:
        return math.nan
    mid = array.size // 2
    if array.size % 2:
        return float(array[mid])
    low, high = float(array[mid - 1]), float(array[mid])
    if math.isinf(low) and math.isinf(high) and low != high:
        return 1.0
    return (low + high) / 2


def common_grid(runs: Sequence[Run]) -> np.ndarray:
    """The steps every run was evaluated at (sorted)."""
    grid = set(runs[0].steps.tolist())
    for run in runs[1:]:
        grid &= set(run.steps.tolist())
    if len(grid) < 2:
        raise ValueError("speed-up: the runs share fewer than two evaluated steps; "
                         "evaluate every method on the same checkpoint grid")
    return np.asarray(sorted(grid))


@dataclass(frozen=True)
class Estimate:
    """A comparison's per-pair rows and summary with bootstrap intervals."""

    pairs: pd.DataFrame
    summary: dict


def estimate(pairs: Sequence[tuple[Run, Run]], plateau_fraction: float = 0.25,
             n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95,
             target_fraction: float = 0.9) -> Estimate:
    """Per-pair speed-ups, their median and the two-level bootstrap (module doc).

    The target of pair i is the mean of :func:`run_target` over the reference (OPD) runs
    of the other pairs in the sample (leave the pair out), so that neither run of a pair
    helps set the line it has to reach; with no other pair, the pair's own reference.
    """
    runs = {id(r): r for pair in pairs for r in pair}
    grid = common_grid(list(runs.values()))
    gridded = {key: run.on_grid(grid) for key, run in runs.items()}
    n_problems = {run.rates.shape[1] for run in gridded.values()}
    if len(n_problems) != 1:
        raise ValueError(f"speed-up: runs were scored on different numbers of problems "
                         f"{sorted(n_problems)}")
    (n_problems,) = n_problems

    def evaluate(problem_index: np.ndarray | None, pair_index: Sequence[int]) -> list[dict]:
        curves: dict[int, np.ndarray] = {}
        targets: dict[int, float] = {}

        def curve(key: int) -> np.ndarray:
            if key not in curves:
                rates = gridded[key].rates
                curves[key] = (rates if problem_index is None else rates[:, problem_index]) \
                    .mean(axis=1)
            return curves[key]

        def target_of(key: int) -> float:
            if key not in targets:
                targets[key] = run_target(grid, curve(key), plateau_fraction, target_fraction)
            return targets[key]

        rows = []
        for i in pair_index:
            ref, trt = pairs[i]
            others = [id(pairs[j][0]) for j in pair_index
                      if id(pairs[j][0]) not in (id(ref), id(trt))]
            target = float(np.mean([target_of(k) for k in others or [id(ref)]]))
            rows.append(pair_speedup(gridded[id(ref)], curve(id(ref)), gridded[id(trt)],
                                     curve(id(trt)), target))
        return rows

    point = evaluate(None, range(len(pairs)))
    table = pd.DataFrame([{"ref_seed": ref.seed, "trt_seed": trt.seed, **row}
                          for (ref, trt), row in zip(pairs, point, strict=True)])
    table["final_accuracy_diff"] = table["trt_final_accuracy"] - table["ref_final_accuracy"]

    rng = np.random.default_rng(seed)
    replicates: dict[str, list[float]] = {f"speedup_{u}": [] for u in UNITS}
    for _ in range(n_bootstrap):
        problems = rng.integers(0, n_problems, n_problems)
        chosen = rng.integers(0, len(pairs), len(pairs))
        rows = evaluate(problems, chosen)
        for unit in UNITS:
            column = f"speedup_{unit}"
            replicates[column].append(censored_median([_rank_value(r, column) for r in rows]))

    summary: dict = {"n_pairs": len(pairs), "n_problems": int(n_problems),
                     "grid": " ".join(str(int(g)) for g in grid),
                     "reached": f"{int(table['trt_reached'].sum())}/{len(table)}",
                     "reached_fraction": float(table["trt_reached"].mean()),
                     "target_accuracy": float(table["target_accuracy"].mean())}
    for unit in UNITS:
        column = f"speedup_{unit}"
        value = censored_median([_rank_value(r, column) for r in point])
        low, high = percentile_interval(replicates[column], confidence)
        summary[column] = value if math.isfinite(value) else math.nan
        summary[f"{column}_censored"] = ("below" if value == -math.inf else
                                         "above" if value == math.inf else "")
        summary[f"{column}_ci95_low"] = max(low, 0.0) if not math.isnan(low) else math.nan
        summary[f"{column}_ci95_high"] = high
        summary[f"{column}_se"] = bootstrap_se(replicates[column])
    final = np.stack([gridded[id(trt)].rates[-1] - gridded[id(ref)].rates[-1]
                      for ref, trt in pairs])  # (pairs, problems)
    diff, se, df = crossed_mean(final)
    summary["final_accuracy_diff"] = diff
    low, high = t_interval(diff, se, df, confidence)
    summary["final_accuracy_diff_ci95_low"], summary["final_accuracy_diff_ci95_high"] = low, high
    summary["final_accuracy_diff_se"] = se
    return Estimate(table, summary)


def bootstrap_se(replicates: Sequence[float]) -> float:
    """Robust bootstrap standard error: half the 15.87-84.13 percentile range (the SD for a
    normal distribution), inf when that range reaches censored (infinite) replicates."""
    values = np.asarray([v for v in replicates if not math.isnan(v)], dtype=float)
    if values.size < 2:
        return math.nan
    low, high = np.quantile(values, [0.158655, 0.841345], method="inverted_cdf")
    if not (math.isfinite(low) and math.isfinite(high)):
        return math.inf
    return float((high - low) / 2)


def mde_from_se(se: float) -> float:
    """Minimum detectable effect at 80% power, two-sided 5% level, normal theory: 2.80 se;
    NaN unless se is positive and finite (an SE of 0, e.g. a bootstrap median pinned by runs
    identical to OPD's, measures no power)."""
    return Z_POWER_80 * se if 0 < se < math.inf else math.nan


def seeds_for_effect_from_se(se: float, n: int, effect: float) -> int | None:
    """Seeds needed for an MDE of ``effect`` when ``n`` seeds give standard error ``se``
    (se shrinks as 1 / sqrt(n)): ceil(n (2.80 se / effect)^2), at least 2; None unless se
    is positive and finite (:func:`mde_from_se`)."""
    if not (effect > 0) or not (0 < se < math.inf):
        return None
    return max(2, math.ceil(n * (Z_POWER_80 * se / effect) ** 2))


# --------------------------------------------------------------------------- files


def problem_rates(eval_csv: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, rates) from evaluate-series' per-problem file beside ``eval_csv``:
    ``rates[g, i]`` = correct samples of problem i at step g / n."""
    table = pd.read_csv(problems_csv(eval_csv))
    counts = table.drop(columns=["step", "n"]).to_numpy(dtype=float)
    return (table["step"].to_numpy(dtype=int),
            counts / table["n"].to_numpy(dtype=float)[:, None])


def load_run(eval_csv: str | Path, log_csv: str | Path | None) -> Run:
    """A Run from evaluate-series' per-problem file and the training log (costs)."""
    method, seed = run_of(Path(eval_csv).parent)
    steps, rates = problem_rates(eval_csv)
    costs, log_steps = {}, np.zeros(1)
    if log_csv is not None:
        cumulative = cumulative_costs(pd.read_csv(log_csv).sort_values("step"))
        log_steps = np.concatenate([[0], cumulative["step"].to_numpy(dtype=float)])
        for unit, column in (("tokens", "generated_tokens"), ("cpu_s", "cpu_s")):
            if cumulative[column].notna().all():
                costs[unit] = np.concatenate([[0.0], cumulative[column].to_numpy(dtype=float)])
    return Run(method, seed, steps, rates, log_steps, costs)


def cumulative_costs(train_log: pd.DataFrame) -> pd.DataFrame:
    """Per step of a training log: generated tokens so far (training responses plus EffOPD's
    validation rollouts) and CPU seconds so far (NaN where the log lacks them, e.g. older or
    external logs)."""
    tokens = train_log["response_tokens"] + train_log.get("val_tokens", 0)
    return pd.DataFrame({"step": train_log["step"], "generated_tokens": tokens.cumsum(),
                         "cpu_s": train_log["cpu_s"] if "cpu_s" in train_log
                         else float("nan")})


def estimate_settings(speedup: dict | None) -> dict:
    """:func:`estimate`'s keyword arguments from the config's ``speedup`` block."""
    settings = speedup or {}
    return {"plateau_fraction": settings.get("plateau_fraction", 0.25),
            "n_bootstrap": settings.get("bootstrap", 2000),
            "seed": settings.get("bootstrap_seed", 0),
            "confidence": settings.get("confidence", 0.95),
            "target_fraction": settings.get("target_fraction", 0.9)}


def speedup_table(runs: Sequence[Run], plateau_fraction: float = 0.25,
                  n_bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95,
                  non_inferiority_margin: float = 0.01, target_fraction: float = 0.9
                  ) -> pd.DataFrame:
    """effopd_speedup: per pair and summary rows for EffOPD vs OPD and the OPD vs OPD null.

    Columns: comparison (effopd_vs_opd | null_opd_vs_opd), row (pair | summary), the
    seeds, target accuracy, steps to target, reached, the speed-up in each unit (NaN
    when censored, with its upper bound) and, on summary rows, its 95% interval,
    bootstrap SE, reached fraction, final-accuracy difference and its interval,
    ``non_inferior`` (EffOPD row) and ``null_contains_1`` (null row, steps unit).
    """
    by = {(r.method, r.seed): r for r in runs}
    seeds = sorted(s for m, s in by if m == "opd")
    comparisons = {
        "effopd_vs_opd": [(by[("opd", s)], by[("effopd", s)]) for s in seeds
                          if ("effopd", s) in by],
        "null_opd_vs_opd": [(by[("opd", s)], by[("opd", seeds[(i + 1) % len(seeds)])])
                            for i, s in enumerate(seeds)] if len(seeds) > 1 else [],
    }
    frames = []
    for name, pairs in comparisons.items():
        if not pairs:
            continue
        result = estimate(pairs, plateau_fraction, n_bootstrap, seed, confidence,
                          target_fraction)
        rows = result.pairs.copy()
        for unit in UNITS:
            rows[f"speedup_{unit}"] = rows[f"speedup_{unit}"].replace([-math.inf, math.inf],
                                                                      math.nan)
        rows.insert(0, "row", "pair")
        rows.insert(0, "comparison", name)
        summary = {"comparison": name, "row": "summary", **result.summary}
        if name == "effopd_vs_opd":
            summary["non_inferior"] = bool(
                summary["final_accuracy_diff_ci95_low"] > -non_inferiority_margin)
        else:  # cyclic pairs: the mean final-accuracy difference is 0 by construction
            for column in ("final_accuracy_diff_ci95_low", "final_accuracy_diff_ci95_high",
                           "final_accuracy_diff_se"):
                summary[column] = math.nan
            summary["null_contains_1"] = bool(
                summary["speedup_steps_ci95_low"] <= 1 <= summary["speedup_steps_ci95_high"])
        frames += [rows, pd.DataFrame([summary])]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary_row(table: pd.DataFrame, comparison: str = "effopd_vs_opd") -> pd.Series:
    """The summary row of one comparison of an effopd_speedup table."""
    rows = table[(table["comparison"] == comparison) & (table["row"] == "summary")]
    if rows.empty:
        raise ValueError(f"effopd_speedup: no summary row for {comparison!r}")
    return rows.iloc[0]


def format_number(x) -> str:
    """Three significant digits; empty for a missing value."""
    return "" if x is None or pd.isna(x) else f"{float(x):.3g}"


def interval_text(row: pd.Series, column: str) -> str:
    """A summary estimate with its interval inline: ``value [low, high]``, or
    ``censored (below|above) [low, high]`` when the estimate itself is censored."""
    side = row.get(f"{column}_censored")
    text = f"censored ({side})" if side in ("below", "above") else format_number(row[column])
    return (f"{text} [{format_number(row[f'{column}_ci95_low'])}, "
            f"{format_number(row[f'{column}_ci95_high'])}]")


def speedup_markdown(table: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view: one line per pair and summary, intervals inline, censoring shown as
    ``< bound``."""
    number = format_number

    def value(row: pd.Series, column: str) -> str:
        if row["row"] == "pair":
            if row["status"] == "ref only":
                return f"< {number(row[f'{column}_bound'])} (EffOPD did not reach)"
            if row["status"] == "trt only":
                return f"> {number(row[f'{column}_bound'])} (OPD did not reach)"
            return number(row[column]) if row["status"] == "both" else row["status"]
        return interval_text(row, column)

    lines = []
    for _, row in table.iterrows():
        summary = row["row"] == "summary"
        check = ""
        if summary and row["comparison"] == "effopd_vs_opd":
            check = "non-inferior" if bool(row["non_inferior"]) else "not shown non-inferior"
        elif summary:
            check = "contains 1" if bool(row["null_contains_1"]) else "DOES NOT contain 1"
        diff = number(row["final_accuracy_diff"])
        if summary:  # the null's mean is 0 by construction (cyclic pairs): no interval
            diff = (interval_text(row, "final_accuracy_diff")
                    if row["comparison"] == "effopd_vs_opd" else f"{diff} (by construction)")
        lines.append({
            "comparison": row["comparison"],
            "seeds (ref / trt)": "median" if summary
            else f"{int(row['ref_seed'])} / {int(row['trt_seed'])}",
            "target acc": number(row["target_accuracy"]),
            "reached": row["reached"] if summary else row["status"],
            "speed-up, steps": value(row, "speedup_steps"),
            "speed-up, tokens": value(row, "speedup_tokens"),
            "speed-up, CPU s": value(row, "speedup_cpu_s"),
            "final acc diff": diff,
            "check": check,
        })
    return pd.DataFrame(lines)

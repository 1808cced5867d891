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
- **Target.** An OPD run's plateau P is the mean of its fitted curve over the grid
  steps in the last ``plateau_fraction`` of training (t >= t_last - fraction (t_last -
  t_0); at least the last step: a grid dense early, 1, 2, 4, ..., does not pull the
  plateau back into the rise); where it reaches
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
- **Time-scale speed-up.** A second estimate, from the whole curves rather than one
  crossing: the factor s for which EffOPD's accuracy at time x equals OPD's at time
  s x. Per pair, with y_r, y_t the runs' accuracies at their grid times x and F_r, F_t
  the same points read in between by the monotone cubic Hermite interpolant (PCHIP:
  monotone where the points are, and a concave curve read linearly between coarse
  checkpoints would arrive late), s minimises the mean squared residual in each
  direction, over the points x > 0 whose image lies inside the other run's grid range,
  the two directions weighted equally:

      Q(s) = 1/2 mean{ (y_t(x) - F_r(s x))^2 : s x <= x_last(ref) }
           + 1/2 mean{ (y_r(x) - F_t(x / s))^2 : x / s <= x_last(trt) }

  (one direction alone where the other has no point), over log s in [log 1/16, log 16]
  (a grid, then Brent's method around its best point). Swapping the runs turns s into
  1/s, so identical methods give log s symmetric about 0; reading both directions
  keeps the number of points from pulling s one way (the treatment-only form, whose
  points drop out as s grows, gave identical methods 1.05-1.15). The points are not
  isotonic-fitted first: a least-squares fit pools every point anyway, and an isotonic
  fit is biased low at the start of a noisy plateau and high at its end, which biased
  s low by a further 2-3% in simulation. Time x is steps, or the run's cumulative cost
  (tokens, CPU seconds) at each grid step. A pair in which either run's isotonic fit
  has no gain has no value (a flat curve has no time scale). Summary: exp of the mean
  m of log s over pairs, with the t interval exp(m -/+ t_{0.975, n-1} sd / sqrt(n))
  over the n pairs (independent seeds) and the standard error exp(m) sd / sqrt(n)
  (delta method) for the MDE helpers. The test problems are held fixed (as the target
  is). The null control's cyclic pairs share runs (each OPD run is the reference of
  one pair and the treatment of another), so its interval treats dependent pairs as
  independent; neighbours' log s are negatively correlated, which makes it conservative
  rather than anti-conservative. ``benchmarks/speedup_calibration.py`` checks both
  estimators on simulated studies.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.interpolate import PchipInterpolator

from effopd.config import block_defaults
from effopd.errors import InputError
from effopd.methods import EFFOPD, OPD, Method, method_label
from effopd.metrics import problems_csv
from effopd.reports.runs import RunFiles, paired_runs
from effopd.reports.stats import Z_POWER_80, crossed_mean, percentile_interval, t_interval
from effopd.tables import PROBLEMS, read_table

UNITS = ("steps", "tokens", "cpu_s")
# The keyword defaults of the estimator: the config schema's speedup block, read once.
SPEEDUP = block_defaults("speedup")


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
    """Mean of the fitted curve over the grid steps in the last ``fraction`` of training,
    t >= t_last - fraction (t_last - t_0) (at least the last step). On an evenly spaced grid
    this is the last ceil(fraction x grid size) steps at fraction 0.25; a grid dense early
    (1, 2, 4, ...) adds no late steps, so it does not move the plateau."""
    steps = np.asarray(steps, dtype=float)
    late = steps >= steps[-1] - fraction * (steps[-1] - steps[0]) - 1e-9
    late[-1] = True
    return float(np.mean(np.asarray(fitted, dtype=float)[late]))


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


TIMESCALE_BOUNDS = (1 / 16, 16.0)


def interpolant(x: np.ndarray, y: np.ndarray) -> PchipInterpolator:
    """A run's curve as a function of time: the monotone piecewise-cubic Hermite interpolant
    (PCHIP, Fritsch-Carlson) through (x, y), which is monotone wherever the points are,
    does not overshoot them and reproduces a straight line exactly; NaN outside
    [x_0, x_last] (no extrapolation)."""
    return PchipInterpolator(np.asarray(x, dtype=float), np.asarray(y, dtype=float),
                             extrapolate=False)


def timescale_loss(s, ref_x: np.ndarray, ref_y: np.ndarray, trt_x: np.ndarray,
                   trt_y: np.ndarray):
    """Q(s) of the time-scale model (module doc): half the mean squared residual of the
    treatment points y_t(x) against F_r(s x) plus half that of the reference points y_r(x)
    against F_t(x / s), x > 0, each point only where its image lies within the other run's
    grid range; one direction alone when the other has no point, inf when neither has.
    ``s`` a number (a float back) or an array (an array back)."""
    ref_x, trt_x = np.asarray(ref_x, dtype=float), np.asarray(trt_x, dtype=float)
    ref_y, trt_y = np.asarray(ref_y, dtype=float), np.asarray(trt_y, dtype=float)
    ref_f, trt_f = interpolant(ref_x, ref_y), interpolant(trt_x, trt_y)
    a, b = trt_x > 0, ref_x > 0
    scale = np.atleast_1d(np.asarray(s, dtype=float))[:, None]
    means = []
    for residuals in (trt_y[a] - ref_f(scale * trt_x[a]), ref_y[b] - trt_f(ref_x[b] / scale)):
        used = ~np.isnan(residuals)
        count = used.sum(axis=1)
        squares = np.where(used, residuals, 0.0) ** 2
        means.append(np.where(count > 0, squares.sum(axis=1) / np.maximum(count, 1), np.nan))
    forward, backward = means
    loss = np.where(np.isnan(forward), backward,
                    np.where(np.isnan(backward), forward, (forward + backward) / 2))
    loss = np.where(np.isnan(loss), math.inf, loss)
    return float(loss[0]) if np.ndim(s) == 0 else loss


def timescale(ref_x: np.ndarray, ref_y: np.ndarray, trt_x: np.ndarray, trt_y: np.ndarray,
              bounds: tuple[float, float] = TIMESCALE_BOUNDS, n_grid: int = 641) -> float:
    """The time-scale speed-up of one pair: argmin_s Q(s) (:func:`timescale_loss`), s > 1 when
    the treatment is faster. Searched over ``n_grid`` log-spaced values in ``bounds``, then
    refined by Brent's method between the best value's neighbours. NaN when either run's
    isotonic fit shows no gain (a flat curve has no time scale) or a time axis is not
    increasing."""
    ref_x, trt_x = np.asarray(ref_x, dtype=float), np.asarray(trt_x, dtype=float)
    if (np.any(np.isnan(ref_x)) or np.any(np.isnan(trt_x)) or np.any(np.diff(ref_x) <= 0)
            or np.any(np.diff(trt_x) <= 0)):
        return math.nan
    if min(np.ptp(isotonic(ref_y)), np.ptp(isotonic(trt_y))) <= 1e-12:
        return math.nan

    def loss(log_s):
        return timescale_loss(np.exp(log_s), ref_x, ref_y, trt_x, trt_y)

    grid = np.linspace(math.log(bounds[0]), math.log(bounds[1]), n_grid)
    losses = loss(grid)
    best = int(np.argmin(losses))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, n_grid - 1)]
    refined = optimize.minimize_scalar(loss, bounds=(low, high), method="bounded",
                                       options={"xatol": 1e-10})
    log_s = refined.x if refined.fun <= losses[best] else grid[best]
    return float(math.exp(log_s))


def timescale_summary(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Exp of the mean of log s over pairs with its t interval and delta-method SE (module
    doc): ``estimate`` exp(m), ``low``/``high`` exp(m -/+ t_{(1+confidence)/2, n-1} se_log),
    ``se`` exp(m) se_log, se_log = sd(log s) / sqrt(n); ``n`` pairs with a value (NaNs
    dropped). One pair gives no interval."""
    logs = np.log(np.asarray([v for v in values if not math.isnan(v)], dtype=float))
    n = int(logs.size)
    if n == 0:
        return {"estimate": math.nan, "low": math.nan, "high": math.nan, "se": math.nan,
                "n": 0}
    mean = float(logs.mean())
    se_log = float(logs.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    low, high = t_interval(mean, se_log, n - 1, confidence)
    return {"estimate": math.exp(mean), "low": math.exp(low), "high": math.exp(high),
            "se": math.exp(mean) * se_log, "n": n}


def pair_timescale(ref: Run, ref_curve: np.ndarray, trt: Run, trt_curve: np.ndarray,
                   unit: str) -> float:
    """:func:`timescale` of a pair on its grid, time in ``unit``: steps, or each run's
    cumulative cost at its grid steps (NaN when the run has no such cost)."""
    ref_x = np.asarray([ref.cost(unit, g) for g in ref.steps])
    trt_x = np.asarray([trt.cost(unit, g) for g in trt.steps])
    return timescale(ref_x, ref_curve, trt_x, trt_curve)


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


def estimate(pairs: Sequence[tuple[Run, Run]],
             plateau_fraction: float = SPEEDUP["plateau_fraction"],
             n_bootstrap: int = SPEEDUP["bootstrap"], seed: int = SPEEDUP["bootstrap_seed"],
             confidence: float = SPEEDUP["confidence"],
             target_fraction: float = SPEEDUP["target_fraction"]) -> Estimate:
    """Per-pair speed-ups, their median and the two-level bootstrap (module doc).

    The target of pair i is the mean of :func:`run_target` over the reference (OPD) runs
    of the other pairs in the sample (leave the pair out), so that neither run of a pair
    helps set the line it has to reach; with no other pair, the pair's own reference.
    Beside it, per pair and in summary, the time-scale speed-up (``timescale_<unit>``:
    :func:`pair_timescale`, :func:`timescale_summary`) on the same grid.
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
    for unit in UNITS:
        table[f"timescale_{unit}"] = [
            pair_timescale(gridded[id(ref)], gridded[id(ref)].rates.mean(axis=1),
                           gridded[id(trt)], gridded[id(trt)].rates.mean(axis=1), unit)
            for ref, trt in pairs]

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
    for unit in UNITS:
        column = f"timescale_{unit}"
        fit = timescale_summary(table[column].tolist(), confidence)
        summary[column] = fit["estimate"]
        summary[f"{column}_ci95_low"], summary[f"{column}_ci95_high"] = fit["low"], fit["high"]
        summary[f"{column}_se"] = fit["se"]
        summary[f"{column}_n_pairs"] = fit["n"]
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


def problem_rates(eval_csv: str | Path, expected_steps: Sequence[int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, rates) from evaluate-series' per-problem file beside ``eval_csv``:
    ``rates[g, i]`` = correct samples of problem i at step g / n. Refused, naming both
    files, when its steps differ from ``expected_steps`` (the series' own)."""
    table = read_table(problems_csv(eval_csv), PROBLEMS)
    if expected_steps is not None and sorted(table["step"]) != sorted(expected_steps):
        raise InputError(f"{problems_csv(eval_csv)}: steps {sorted(table['step'])} differ "
                         f"from {eval_csv}'s {sorted(expected_steps)}")
    counts = table.drop(columns=["step", "n"]).to_numpy(dtype=float)
    return (table["step"].to_numpy(dtype=int),
            counts / table["n"].to_numpy(dtype=float)[:, None])


def load_runs(eval_csvs: Sequence[str | Path], log_csvs: Sequence[str | Path],
              benchmark: str | None = None) -> list[Run]:
    """Runs from evaluate-series' per-problem files and the training logs (costs), joined on
    the runs' method and seed (:func:`effopd.reports.runs.paired_runs`); with
    ``benchmark``, the runs whose series scored that benchmark."""
    return [run_from_files(files) for files in paired_runs(eval_csvs, log_csvs)
            if benchmark is None or set(files.scores["benchmark"]) == {benchmark}]


def run_from_files(files: RunFiles) -> Run:
    """A Run from one run's per-problem counts (beside its evaluation series; the same steps)
    and its training log's cumulative costs."""
    steps, rates = problem_rates(files.eval_csv, files.scores["step"].tolist())
    costs = {}
    cumulative = cumulative_costs(files.log.sort_values("step"))
    log_steps = np.concatenate([[0], cumulative["step"].to_numpy(dtype=float)])
    for unit, column in (("tokens", "generated_tokens"), ("cpu_s", "cpu_s")):
        if cumulative[column].notna().all():
            costs[unit] = np.concatenate([[0.0], cumulative[column].to_numpy(dtype=float)])
    return Run(files.method, files.seed, steps, rates, log_steps, costs)


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
    settings = block_defaults("speedup", speedup)
    return {"plateau_fraction": settings["plateau_fraction"],
            "n_bootstrap": settings["bootstrap"], "seed": settings["bootstrap_seed"],
            "confidence": settings["confidence"], "target_fraction": settings["target_fraction"]}


def curve_area(run: Run) -> float:
    """Mean accuracy over training time: (1 / (S - s_0)) * integral of acc(t) dt from the first
    evaluated step s_0 to the last S, trapezoid rule over the evaluated steps, acc(t) = the mean
    over problems of the per-problem correct rate. Rewards both a fast rise and a high level."""
    accuracy = run.rates.mean(axis=1)
    span = float(run.steps[-1] - run.steps[0])
    return float(np.trapezoid(accuracy, run.steps) / span) if span > 0 else float(accuracy[-1])


def best_lr_method(runs: Sequence[Run], candidates: Sequence[str]) -> str:
    """The OPD learning rate the referee would pick: of ``candidates`` (OPD and its
    ``opd-lr<m>x`` baselines), the method with the largest mean :func:`curve_area` over
    its seeds, every run read on the grid all candidates share (ties: the first). Chosen
    on the same runs it is then compared on, so the choice favours the baseline: EffOPD's
    speed-up against it is conservative."""
    by_method = {m: [r for r in runs if r.method == m] for m in candidates}
    present = [m for m in candidates if by_method[m]]
    if not present:
        raise ValueError(f"speed-up: no runs of {list(candidates)}")
    grid = common_grid([r for m in present for r in by_method[m]])
    areas = {m: float(np.mean([curve_area(r.on_grid(grid)) for r in by_method[m]]))
             for m in present}
    return max(present, key=lambda m: (areas[m], -present.index(m)))


def comparisons_of(runs: Sequence[Run], methods: Mapping[str, Method] | None = None
                   ) -> list[tuple[str, str, str]]:
    """The comparisons of the effopd_speedup table, as (name, reference, treatment), the
    runs paired by seed: EffOPD vs OPD; each learning-rate baseline (a declared method of
    role ``lr_baseline`` among ``methods``, in order of its learning-rate multiplier) vs
    OPD (``<baseline>_vs_opd``: is a larger step itself a speed-up?); EffOPD vs OPD at its
    best learning rate (``effopd_vs_best_lr_opd``, :func:`best_lr_method`) when baselines
    were trained; the null ``null_opd_vs_opd`` (OPD seed i vs seed i + 1, cyclic)."""
    present = {r.method for r in runs}
    baselines = sorted((m for m in (methods or {}).values()
                        if m.role == "lr_baseline" and m.name in present),
                       key=lambda m: m.lr_multiplier)
    names = [m.name for m in baselines]
    comparisons = [(f"{EFFOPD}_vs_{OPD}", OPD, EFFOPD)]
    comparisons += [(f"{b}_vs_{OPD}", OPD, b) for b in names]
    if names:
        comparisons.append((f"{EFFOPD}_vs_best_lr_{OPD}", best_lr_method(runs, [OPD, *names]),
                            EFFOPD))
    return [*comparisons, (f"null_{OPD}_vs_{OPD}", OPD, OPD)]


def speedup_table(runs: Sequence[Run], plateau_fraction: float = SPEEDUP["plateau_fraction"],
                  n_bootstrap: int = SPEEDUP["bootstrap"], seed: int = SPEEDUP["bootstrap_seed"],
                  confidence: float = SPEEDUP["confidence"],
                  non_inferiority_margin: float = SPEEDUP["non_inferiority_margin"],
                  target_fraction: float = SPEEDUP["target_fraction"],
                  methods: Mapping[str, Method] | None = None) -> pd.DataFrame:
    """effopd_speedup: per pair and summary rows for each comparison of
    :func:`comparisons_of` (EffOPD vs OPD, the learning-rate baselines among the declared
    ``methods`` vs OPD, EffOPD vs OPD at its best learning rate, the OPD vs OPD null).

    Columns: comparison, reference and treatment (the methods compared), row (pair |
    summary), the seeds, target accuracy, steps to target, reached, the speed-up in each
    unit (NaN when censored, with its upper bound) and, on summary rows, its 95% interval,
    bootstrap SE, reached fraction, final-accuracy difference and its interval,
    ``non_inferior`` (every row but the null's) and ``null_contains_1`` (null row, steps
    unit). Beside them the time-scale speed-up ``timescale_<unit>`` (per pair; on summary
    rows with ``_ci95_low``, ``_ci95_high``, ``_se`` and ``_n_pairs``) and, on the null
    row, ``null_timescale_contains_1``.
    """
    by = {(r.method, r.seed): r for r in runs}
    frames = []
    for name, reference, treatment in comparisons_of(runs, methods):
        seeds = sorted(s for m, s in by if m == reference)
        if name.startswith("null_"):
            pairs = [(by[(reference, s)], by[(reference, seeds[(i + 1) % len(seeds)])])
                     for i, s in enumerate(seeds)] if len(seeds) > 1 else []
        else:
            pairs = [(by[(reference, s)], by[(treatment, s)]) for s in seeds
                     if (treatment, s) in by]
        if not pairs:
            continue
        result = estimate(pairs, plateau_fraction, n_bootstrap, seed, confidence,
                          target_fraction)
        rows = result.pairs.copy()
        for unit in UNITS:
            rows[f"speedup_{unit}"] = rows[f"speedup_{unit}"].replace([-math.inf, math.inf],
                                                                      math.nan)
        rows.insert(0, "row", "pair")
        rows.insert(0, "treatment", treatment)
        rows.insert(0, "reference", reference)
        rows.insert(0, "comparison", name)
        summary = {"comparison": name, "reference": reference, "treatment": treatment,
                   "row": "summary", **result.summary}
        if not name.startswith("null_"):
            summary["non_inferior"] = bool(
                summary["final_accuracy_diff_ci95_low"] > -non_inferiority_margin)
        else:  # cyclic pairs: the mean final-accuracy difference is 0 by construction
            for column in ("final_accuracy_diff_ci95_low", "final_accuracy_diff_ci95_high",
                           "final_accuracy_diff_se"):
                summary[column] = math.nan
            summary["null_contains_1"] = bool(
                summary["speedup_steps_ci95_low"] <= 1 <= summary["speedup_steps_ci95_high"])
            summary["null_timescale_contains_1"] = bool(
                summary["timescale_steps_ci95_low"] <= 1
                <= summary["timescale_steps_ci95_high"])
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


def format_lr(lr: float) -> str:
    """A learning rate as people write it: ``3e-4``, ``1.5e-4`` (up to 3 significant digits)."""
    mantissa, exponent = f"{float(lr):.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def interval_text(row: pd.Series, column: str) -> str:
    """A summary estimate with its interval inline: ``value [low, high]``, or
    ``censored (below|above) [low, high]`` when the estimate itself is censored."""
    side = row.get(f"{column}_censored")
    text = f"censored ({side})" if side in ("below", "above") else format_number(row[column])
    return (f"{text} [{format_number(row[f'{column}_ci95_low'])}, "
            f"{format_number(row[f'{column}_ci95_high'])}]")


def speedup_markdown(table: pd.DataFrame, methods: Mapping[str, Method] | None = None
                     ) -> pd.DataFrame:
    """The Markdown view: one line per pair and summary, intervals inline, censoring shown as
    ``< bound``; the time-scale speed-up in its own columns (empty for a table written
    before it existed)."""
    number = format_number

    def row_method(row: pd.Series, column: str, default: str) -> str:
        """A row's method in ``column``, labelled (:func:`method_label`); a table written
        before the column existed names ``default``."""
        method = row.get(column)
        return method_label(default if method is None or pd.isna(method) else str(method),
                            methods)

    def value(row: pd.Series, column: str) -> str:
        if row["row"] == "pair":
            if row["status"] == "ref only":
                return (f"< {number(row[f'{column}_bound'])} "
                        f"({row_method(row, 'treatment', EFFOPD)} did not reach)")
            if row["status"] == "trt only":
                return (f"> {number(row[f'{column}_bound'])} "
                        f"({row_method(row, 'reference', OPD)} did not reach)")
            return number(row[column]) if row["status"] == "both" else row["status"]
        return interval_text(row, column)

    def scale_text(row: pd.Series, column: str) -> str:
        if column not in row:
            return ""
        return number(row[column]) if row["row"] == "pair" else interval_text(row, column)

    def contains(flag) -> str:
        return "contains 1" if bool(flag) else "DOES NOT contain 1"

    lines = []
    for _, row in table.iterrows():
        summary = row["row"] == "summary"
        check = ""
        null = str(row["comparison"]).startswith("null_")
        if summary and not null:
            check = "non-inferior" if bool(row["non_inferior"]) else "not shown non-inferior"
        elif summary:
            check = contains(row["null_contains_1"])
            if "null_timescale_contains_1" in row:
                check += f"; time-scale {contains(row['null_timescale_contains_1'])}"
        diff = number(row["final_accuracy_diff"])
        if summary:  # the null's mean is 0 by construction (cyclic pairs): no interval
            diff = (interval_text(row, "final_accuracy_diff")
                    if not null else f"{diff} (by construction)")
        lines.append({
            "comparison": row["comparison"],
            "reference": row_method(row, "reference", OPD),
            "seeds (ref / trt)": "median" if summary
            else f"{int(row['ref_seed'])} / {int(row['trt_seed'])}",
            "target acc": number(row["target_accuracy"]),
            "reached": row["reached"] if summary else row["status"],
            "speed-up, steps": value(row, "speedup_steps"),
            "speed-up, tokens": value(row, "speedup_tokens"),
            "speed-up, CPU s": value(row, "speedup_cpu_s"),
            "time-scale, steps": scale_text(row, "timescale_steps"),
            "time-scale, tokens": scale_text(row, "timescale_tokens"),
            "time-scale, CPU s": scale_text(row, "timescale_cpu_s"),
            "final acc diff": diff,
            "check": check,
        })
    return pd.DataFrame(lines)

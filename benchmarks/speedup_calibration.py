"""Calibration of the speed-up estimator on simulated studies with a known answer.

Each simulated study trains OPD and EffOPD for ``--seeds`` seeds on a shared
problem set: problem p's correct probability at step t is
sigmoid(d_p + g(speed * t)), g a saturating rise whose amplitude varies by
``--seed-sd`` between seeds; every checkpoint is scored with ``--samples``
samples of each of ``--problems`` problems (the tiny default: 256 x 4), on the
tiny default's checkpoint grids (OPD every 6 steps to 48; EffOPD also at 1, 2,
4, 8, 16, 32). For the true speed-ups 1 (identical methods) and 2 it prints, for
the suite's estimator (effopd.reports.speedup) and for the first-passage rule it
replaced (first EffOPD checkpoint, extra looks included, at or above OPD's last
point): the median and mean estimate, how often the 95% interval covers the true
value (suite only: the old rule had no principled interval) and how often the
treatment is censored.

    python benchmarks/speedup_calibration.py --studies 100
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from effopd.reports.speedup import Run, estimate

OPD_GRID = np.arange(0, 49, 6)
EFFOPD_GRID = np.unique(np.concatenate([OPD_GRID, [1, 2, 4, 8, 16, 32]]))


def simulate(rng, speed, difficulty, steps, samples, seed_gain):
    rise = 1 - np.exp(-steps * speed / 15.0)
    g = -0.7 + 0.5 * seed_gain * rise
    p = 1 / (1 + np.exp(-(difficulty[None, :] + g[:, None])))
    return rng.binomial(samples, p) / samples


def old_rule(opd: np.ndarray, eff: np.ndarray) -> float:
    """The replaced estimator: OPD's last step / first EffOPD step at or above OPD's last point
    (EffOPD's extra checkpoints included); NaN when never reached."""
    target = opd[-1]
    hits = np.flatnonzero(eff >= target)
    hits = hits[EFFOPD_GRID[hits] > 0]
    return math.nan if hits.size == 0 else OPD_GRID[-1] / EFFOPD_GRID[hits[0]]


def study(rng, speed, args):
    difficulty = rng.normal(0, 1.5, args.problems)
    pairs, old = [], []
    for seed in range(args.seeds):
        gains = 1 + rng.normal(0, args.seed_sd, 2)
        opd = simulate(rng, 1.0, difficulty, OPD_GRID, args.samples, gains[0])
        eff = simulate(rng, speed, difficulty, EFFOPD_GRID, args.samples, gains[1])
        pairs.append((Run("opd", seed, OPD_GRID, opd), Run("effopd", seed, EFFOPD_GRID, eff)))
        old.append(old_rule(opd.mean(axis=1), eff.mean(axis=1)))
    summary = estimate(pairs, n_bootstrap=args.bootstrap,
                       seed=int(rng.integers(1 << 30))).summary
    return summary, float(np.nanmean(old)) if not np.all(np.isnan(old)) else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed-sd", type=float, default=0.1)
    parser.add_argument("--bootstrap", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.studies} studies x {args.seeds} seeds, {args.problems} problems x "
          f"{args.samples} samples, seed-to-seed gain sd {args.seed_sd}\n")
    print("| true speed-up | estimator | median estimate | mean estimate | 95% CI covers truth "
          "| median pair censored |")
    print("| --- | --- | --- | --- | --- | --- |")
    for speed in (1.0, 2.0):
        started = time.perf_counter()
        estimates, old, covered, censored = [], [], [], []
        for _ in range(args.studies):
            summary, old_mean = study(rng, speed, args)
            side = summary["speedup_steps_censored"]
            censored.append(bool(side))
            estimates.append({"below": 0.0, "above": math.inf}.get(side,
                                                                    summary["speedup_steps"]))
            covered.append(summary["speedup_steps_ci95_low"] <= speed
                           <= summary["speedup_steps_ci95_high"])
            old.append(old_mean)
        finite = [e for e in estimates if not math.isnan(e)]
        print(f"| {speed:g} | suite (a censored median as 0 or inf) | {np.median(finite):.3g} | "
              f"{np.mean([e for e in finite if math.isfinite(e)]):.3g} | {np.mean(covered):.0%} "
              f"| {np.mean(censored):.0%} |")
        print(f"| {speed:g} | old first passage (mean over reached seeds) | "
              f"{np.nanmedian(old):.3g} | {np.nanmean(old):.3g} | - | - |")
        print(f"<!-- {time.perf_counter() - started:.0f} s -->")


if __name__ == "__main__":
    main()

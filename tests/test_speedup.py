"""The speed-up estimator on exact cases and on simulated curves with a known answer."""

import math

import numpy as np
import pandas as pd
import pytest

from effopd.reports.speedup import (
    Run,
    censored_median,
    crossing,
    estimate,
    isotonic,
    load_run,
    pair_speedup,
    run_target,
    speedup_table,
    summary_row,
)

GRID = np.arange(0, 49, 6)


def test_isotonic_pools_adjacent_violators():
    assert isotonic([1, 3, 2, 4]) == pytest.approx([1, 2.5, 2.5, 4])
    assert isotonic([3, 2, 1]) == pytest.approx([2, 2, 2])
    assert isotonic([0, 1, 2]) == pytest.approx([0, 1, 2])


def test_crossing_interpolates_linearly_and_censors():
    steps = np.array([0.0, 10.0, 20.0])
    fitted = np.array([0.2, 0.4, 0.6])
    assert crossing(steps, fitted, 0.5) == pytest.approx(15.0)
    assert crossing(steps, fitted, 0.4) == pytest.approx(10.0)
    assert crossing(steps, fitted, 0.61) == math.inf


def test_censored_median_ranks_censored_values_at_their_side():
    assert censored_median([2.0, -math.inf, 3.0]) == 2.0
    assert censored_median([-math.inf, -math.inf, 3.0]) == -math.inf
    assert censored_median([math.inf, 0.5, math.inf]) == math.inf
    assert censored_median([1.0, 2.0, 3.0, 5.0]) == 2.5
    assert censored_median([-math.inf, math.inf]) == 1.0


def curve_run(method, seed, accuracy, steps=GRID, costs=None):
    """A run whose every problem has the given accuracy at each step (no problem noise)."""
    rates = np.repeat(np.asarray(accuracy, dtype=float)[:, None], 4, axis=1)
    log_steps = np.arange(0, int(steps[-1]) + 1, dtype=float)
    return Run(method, seed, np.asarray(steps), rates, log_steps, costs or {})


def test_exact_twofold_speedup_in_steps_tokens_and_cpu():
    # OPD rises linearly to 0.6 at step 24 then is flat; EffOPD twice as fast in steps.
    opd = np.minimum(0.3 + 0.3 * GRID / 24, 0.6)
    eff = np.minimum(0.3 + 0.3 * GRID / 12, 0.6)
    steps = np.arange(0, 49, dtype=float)
    opd_run = curve_run("opd", 0, opd, costs={"tokens": steps * 100, "cpu_s": steps * 2})
    # EffOPD pays 50% more tokens and CPU per step (its validation rollouts)
    eff_run = curve_run("effopd", 0, eff, costs={"tokens": steps * 150, "cpu_s": steps * 3})
    target = run_target(GRID, opd, plateau_fraction=0.25, target_fraction=0.9)
    assert target == pytest.approx(0.3 + 0.9 * 0.3)  # 90% of the gain to the plateau 0.6
    out = pair_speedup(opd_run, opd, eff_run, eff, target)
    assert out["status"] == "both"
    assert out["ref_steps_to_target"] == pytest.approx(21.6)
    assert out["trt_steps_to_target"] == pytest.approx(10.8)
    assert out["speedup_steps"] == pytest.approx(2.0)
    assert out["speedup_tokens"] == pytest.approx(2160 / 1620)
    assert out["speedup_cpu_s"] == pytest.approx(43.2 / 32.4)


def test_extra_looks_do_not_count():
    """A lucky extra checkpoint of EffOPD (off the common grid) cannot make it arrive."""
    opd = np.minimum(0.3 + 0.3 * GRID / 24, 0.6)
    eff_steps = np.sort(np.concatenate([GRID, [1, 2, 4, 8, 16, 32]]))
    eff = np.where(eff_steps == 4, 0.9, np.minimum(0.3 + 0.3 * eff_steps / 24, 0.6))
    runs = [curve_run("opd", 0, opd), curve_run("effopd", 0, eff, steps=eff_steps),
            curve_run("opd", 1, opd)]
    table = speedup_table(runs, n_bootstrap=100)
    assert summary_row(table)["speedup_steps"] == pytest.approx(1.0)
    assert summary_row(table)["grid"] == " ".join(str(g) for g in GRID)


def test_censored_seed_lowers_the_estimate_and_is_never_imputed():
    fast = np.minimum(0.3 + 0.3 * GRID / 12, 0.6)
    opd = np.minimum(0.3 + 0.3 * GRID / 24, 0.6)
    never = np.minimum(0.3 + 0.3 * GRID / 24, 0.5)  # plateaus below OPD's target
    runs = [curve_run("opd", s, opd) for s in range(3)]
    all_fast = runs + [curve_run("effopd", s, fast) for s in range(3)]
    one_fails = runs + [curve_run("effopd", 0, never)] + [curve_run("effopd", s, fast)
                                                          for s in (1, 2)]
    two_fail = runs + [curve_run("effopd", s, never) for s in (0, 1)] + \
        [curve_run("effopd", 2, fast)]
    good = summary_row(speedup_table(all_fast, n_bootstrap=200))
    one = speedup_table(one_fails, n_bootstrap=200)
    bad = summary_row(speedup_table(two_fail, n_bootstrap=200))
    assert good["speedup_steps"] == pytest.approx(2.0) and good["reached"] == "3/3"
    pairs = one[(one["comparison"] == "effopd_vs_opd") & (one["row"] == "pair")]
    failed = pairs[pairs["trt_seed"] == 0].iloc[0]
    assert failed["status"] == "ref only" and math.isnan(failed["speedup_steps"])
    assert failed["speedup_steps_bound"] == pytest.approx(21.6 / 48)  # known only: < 0.45
    assert summary_row(one)["reached"] == "2/3"
    assert summary_row(one)["speedup_steps_ci95_low"] < good["speedup_steps_ci95_low"]
    assert bad["speedup_steps_censored"] and math.isnan(bad["speedup_steps"])
    assert bad["reached_fraction"] == pytest.approx(1 / 3)


def simulate(rng, speed, seed, difficulty, steps=GRID, n=4, seed_sd=0.1):
    """A run on shared problems: logit p = difficulty + g(speed * t), n samples per problem;
    the seed scales the gain by 1 +- seed_sd (0.1: about the tiny default's spread)."""
    t = steps * speed
    rise = 1 - np.exp(-t / 15.0)
    g = -0.7 + 0.5 * (1 + rng.normal(0, seed_sd)) * rise
    p = 1 / (1 + np.exp(-(difficulty[None, :] + g[:, None])))
    return rng.binomial(n, p) / n


def simulated_pairs(rng, speed, seeds, problems=256, n=4, seed_sd=0.1):
    difficulty = rng.normal(0, 1.5, problems)
    pairs = []
    for s in range(seeds):
        pairs.append((Run("opd", s, GRID, simulate(rng, 1.0, s, difficulty, n=n,
                                                   seed_sd=seed_sd)),
                      Run("effopd", s, GRID, simulate(rng, speed, s, difficulty, n=n,
                                                      seed_sd=seed_sd))))
    return pairs


def test_known_twofold_speedup_is_recovered_within_its_interval():
    # a study with the precision to see it: 1024 problems x 16 samples, 8 seeds whose
    # gains differ by 5% (with 10% the interval still covers 2 in about 3 of 4 studies,
    # but is wide: censored pairs rank lowest, which makes the estimate conservative)
    rng = np.random.default_rng(7)
    result = estimate(simulated_pairs(rng, 2.0, 8, problems=1024, n=16, seed_sd=0.05),
                      n_bootstrap=400, seed=1)
    summary = result.summary
    assert summary["speedup_steps_ci95_low"] <= 2.0 <= summary["speedup_steps_ci95_high"]
    assert summary["speedup_steps_ci95_low"] > 1.0  # and it tells 2x from no speed-up


def test_null_interval_covers_one_at_about_its_nominal_rate():
    """Identical methods, 40 simulated studies of 8 seeds: the 95% interval holds 1."""
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(40):
        summary = estimate(simulated_pairs(rng, 1.0, 8), n_bootstrap=200,
                           seed=int(rng.integers(1 << 30))).summary
        covered.append(summary["speedup_steps_ci95_low"] <= 1.0
                       <= summary["speedup_steps_ci95_high"])
    assert np.mean(covered) >= 0.85


def test_table_has_null_control_and_non_inferiority(tmp_path):
    rng = np.random.default_rng(3)
    runs = [run for pair in simulated_pairs(rng, 1.0, 4) for run in pair]
    table = speedup_table(runs, n_bootstrap=200, non_inferiority_margin=0.5)
    null = summary_row(table, "null_opd_vs_opd")
    assert null["n_pairs"] == 4 and isinstance(null["null_contains_1"], bool | np.bool_)
    # cyclic null pairs: the mean final-accuracy difference is 0 by construction, no interval
    assert null["final_accuracy_diff"] == pytest.approx(0, abs=1e-12)
    assert math.isnan(null["final_accuracy_diff_ci95_low"])
    main = summary_row(table)
    assert main["non_inferior"]  # a 50-point margin: trivially non-inferior
    assert {f"speedup_{u}_ci95_low" for u in ("steps", "tokens", "cpu_s")} <= set(table)


def test_load_run_reads_problems_and_costs(tmp_path):
    run_dir = tmp_path / "effopd" / "seed3"
    run_dir.mkdir(parents=True)
    pd.DataFrame({"step": [0, 2], "n": [2, 2], "p0": [0, 2], "p1": [1, 2]}).to_csv(
        run_dir / "bench.problems.csv", index=False)
    (run_dir / "bench.csv").write_text("step\n0\n2\n")
    pd.DataFrame({"step": [1, 2], "response_tokens": [10, 20], "val_tokens": [5, 0],
                  "cpu_s": [1.5, 2.5]}).to_csv(tmp_path / "log.csv", index=False)
    run = load_run(run_dir / "bench.csv", tmp_path / "log.csv")
    assert (run.method, run.seed) == ("effopd", 3)
    assert run.rates.tolist() == [[0.0, 0.5], [1.0, 1.0]]
    assert run.cost("tokens", 1.5) == pytest.approx(15 + 20 / 2)
    assert run.cost("cpu_s", 2) == pytest.approx(2.5)


def test_final_accuracy_difference_is_paired_per_problem_and_seed():
    """Two pairs, four problems, the last checkpoint differs by y = (0.25, 0.25, 0, 0.25 |
    0.25, 0, 0.25, 0.25): mean 0.1875; equal pair means (MS_A = 0), column means
    (0.25, 0.125, 0.125, 0.25) so MS_B = 1/96 < MS_E = 1/48: both components truncate,
    Var = MS_E / (2 x 4) = 1/384 on 3 df (t_{0.975, 3} = 3.182446)."""
    grid = np.array([0, 24, 48])
    base = np.array([0.0, 0.25, 0.5, 0.5])
    pairs = []
    for seed, gain in enumerate(([0.25, 0.25, 0, 0.25], [0.25, 0, 0.25, 0.25])):
        opd = np.stack([base, base + 0.25, base + 0.25])
        eff = np.stack([base, base + 0.25, base + 0.25 + np.asarray(gain)])
        log_steps = np.arange(0, 49, dtype=float)
        pairs.append((Run("opd", seed, grid, opd, log_steps), Run("effopd", seed, grid, eff,
                                                                   log_steps)))
    summary = estimate(pairs, n_bootstrap=100).summary
    assert summary["final_accuracy_diff"] == pytest.approx(0.1875)
    assert summary["final_accuracy_diff_se"] == pytest.approx(math.sqrt(1 / 384))
    assert summary["final_accuracy_diff_ci95_low"] == pytest.approx(
        0.1875 - 3.182446 * math.sqrt(1 / 384), rel=1e-6)

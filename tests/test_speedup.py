"""The speed-up estimator on exact cases and on simulated curves with a known answer."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from effopd.errors import InputError
from effopd.methods import declared_methods
from effopd.reports.speedup import (
    Run,
    best_lr_method,
    censored_median,
    crossing,
    curve_area,
    estimate,
    interpolant,
    isotonic,
    load_runs,
    pair_speedup,
    plateau,
    run_target,
    speedup_markdown,
    speedup_table,
    summary_row,
    timescale,
    timescale_loss,
    timescale_summary,
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


def _write_run(directory: Path, method: str, seed: int, cpu_s: float) -> tuple[Path, Path]:
    """A run's evaluation series, per-problem counts and log, named by their columns only
    (the directory says nothing about the run)."""
    directory.mkdir(parents=True)
    pd.DataFrame({"step": [0, 2], "n": [2, 2], "p0": [0, 2], "p1": [1, 2]}).to_csv(
        directory / "bench.problems.csv", index=False)
    pd.DataFrame({"method": method, "seed": seed, "step": [0, 2], "benchmark": "bench",
                  "avg@n": [0.25, 1.0], "sampling_seed": 42}).to_csv(
        directory / "bench.csv", index=False)
    pd.DataFrame({"method": method, "seed": seed, "step": [1, 2], "response_tokens": [10, 20],
                  "val_tokens": [5, 0], "cpu_s": [cpu_s, cpu_s + 1]}).to_csv(
        directory / "log.csv", index=False)
    return directory / "bench.csv", directory / "log.csv"


def test_load_runs_joins_series_and_logs_on_method_and_seed(tmp_path):
    (eval_a, log_a), (eval_b, log_b) = (_write_run(tmp_path / "x", "effopd", 3, 1.5),
                                        _write_run(tmp_path / "y", "opd", 3, 7.5))
    runs = load_runs([eval_a, eval_b], [log_b, log_a])  # the logs' order does not matter
    assert [(r.method, r.seed) for r in runs] == [("effopd", 3), ("opd", 3)]
    run = runs[0]
    assert run.rates.tolist() == [[0.0, 0.5], [1.0, 1.0]]
    assert run.cost("tokens", 1.5) == pytest.approx(15 + 20 / 2)
    assert run.cost("cpu_s", 2) == pytest.approx(2.5)  # effopd's log, not opd's (8.5)
    assert load_runs([eval_a, eval_b], [log_a, log_b], benchmark="other") == []
    with pytest.raises(InputError, match=r"x/bench.csv: run method=effopd seed=3 has no file "
                                         r"among the training logs"):
        load_runs([eval_a, eval_b], [log_b])
    with pytest.raises(InputError, match=r"y/log.csv: run method=opd seed=3 again"):
        load_runs([eval_a], [log_a, log_b, log_b])


def test_problem_counts_of_other_steps_are_refused(tmp_path):
    eval_csv, log_csv = _write_run(tmp_path / "x", "opd", 0, 1.0)
    pd.DataFrame({"step": [0, 4], "n": [2, 2], "p0": [0, 2]}).to_csv(
        tmp_path / "x" / "bench.problems.csv", index=False)
    with pytest.raises(InputError, match=r"bench.problems.csv: steps \[0, 4\] differ"):
        load_runs([eval_csv], [log_csv])


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


# --------------------------------------------------------------------------- time scale

# the study's grid: saves every 16 steps to 128 united with the powers of two
DENSE = np.array([0, 1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128], dtype=float)


def line(t):
    return 0.3 + 0.002 * np.asarray(t, dtype=float)


def saturating(t):
    return 0.26 + 0.08 * (1 - np.exp(-np.asarray(t, dtype=float) / 35))


def test_plateau_is_the_last_quarter_of_training_not_of_the_grid_points():
    # dense early grid: the last quarter of 64 steps is t >= 48, two of the nine points
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 48, 64])
    fitted = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9], dtype=float)
    assert plateau(steps, fitted, 0.25) == pytest.approx(8.0)
    # an evenly spaced grid: the last ceil(0.25 x 9) = 3 points, as before
    assert plateau(GRID, np.arange(9.0), 0.25) == pytest.approx(7.0)
    assert plateau(GRID, np.arange(9.0), 0.0) == pytest.approx(8.0)  # at least the last


def test_interpolant_passes_through_the_points_and_reads_lines_exactly():
    f = interpolant([0, 1, 2, 3], [0, 2, 1, 3])
    assert f([0, 1, 2, 3]) == pytest.approx([0, 2, 1, 3])
    assert 1 <= float(f(1.5)) <= 2  # no overshoot between a peak and a dip
    assert math.isnan(float(f(3.5)))  # no extrapolation
    g = interpolant(DENSE, line(DENSE))
    assert g([0.5, 24, 100]) == pytest.approx(line([0.5, 24, 100]), abs=1e-12)


def test_interpolant_reads_a_concave_curve_above_its_chord():
    f = interpolant(DENSE, saturating(DENSE))
    chord = (saturating(16) + saturating(32)) / 2
    assert chord < float(f(24)) <= saturating(24) + 1e-4


def test_timescale_loss_by_hand():
    """ref y = x / 10 and trt y = x / 5 on x = 0, 10, 20, at s = 1.5. Treatment points with
    1.5 x <= 20: x = 10, residual 2 - 1.5 = 0.5: mean 1/4. Reference points with
    x / 1.5 <= 20: both, residuals 1 - 4/3 = -1/3 and 2 - 8/3 = -2/3: mean (1/9 + 4/9) / 2
    = 5/18. Q = (1/4 + 5/18) / 2 = 19/72. At s = 8 no treatment point maps inside
    (8 x 10 > 20): the reference direction alone, residuals 1 - 0.25 and 2 - 0.5:
    (0.5625 + 2.25) / 2 = 1.40625."""
    x = np.array([0.0, 10.0, 20.0])
    assert timescale_loss(1.5, x, x / 10, x, x / 5) == pytest.approx(19 / 72, abs=1e-12)
    assert timescale_loss(8.0, x, x / 10, x, x / 5) == pytest.approx(1.40625, abs=1e-12)
    assert timescale_loss(2.0, x, x / 10, x, x / 5) == pytest.approx(0.0, abs=1e-15)
    assert timescale_loss(np.array([1.5, 2.0]), x, x / 10, x, x / 5) == pytest.approx(
        [19 / 72, 0.0], abs=1e-12)


def test_timescale_recovers_a_planted_factor_exactly():
    # f a line (the interpolant reproduces it), g(t) = f(2 t): Q(2) = 0 and only there
    assert timescale(DENSE, line(DENSE), DENSE, line(2 * DENSE)) == pytest.approx(2, abs=1e-6)
    assert timescale(DENSE, line(DENSE), DENSE, line(DENSE / 2)) == pytest.approx(0.5,
                                                                                 abs=1e-6)
    # identical curves, whatever their shape: s = 1
    curve = saturating(DENSE)
    assert timescale(DENSE, curve, DENSE, curve) == pytest.approx(1, abs=1e-6)


def test_timescale_is_antisymmetric_in_the_runs():
    """Swapping the runs maps Q(s) onto Q(1 / s): the estimate turns into its reciprocal."""
    rng = np.random.default_rng(5)
    a = saturating(DENSE) + rng.normal(0, 0.005, DENSE.size)
    b = saturating(2 * DENSE) + rng.normal(0, 0.005, DENSE.size)
    assert timescale(DENSE, a, DENSE, b) * timescale(DENSE, b, DENSE, a) == pytest.approx(
        1, abs=1e-6)


def test_timescale_in_cost_units():
    """EffOPD twice as fast in steps but 1.5x the tokens per step: in tokens, s = 2 / 1.5."""
    ref_tokens, trt_tokens = 100 * DENSE, 150 * DENSE
    assert timescale(ref_tokens, line(DENSE), trt_tokens, line(2 * DENSE)) == pytest.approx(
        4 / 3, abs=1e-6)


def test_timescale_has_no_value_without_a_gain():
    flat = np.full(DENSE.size, 0.3)
    assert math.isnan(timescale(DENSE, flat, DENSE, line(DENSE)))
    assert math.isnan(timescale(DENSE, line(DENSE), DENSE, flat))


def test_timescale_summary_is_a_t_interval_on_the_log_scale():
    """log s = log 2 + (-0.1, 0, 0.1, 0.2): mean log 2 + 0.05, sd sqrt(0.05 / 3), se = sd / 2,
    t_{0.975, 3} = 3.182446."""
    logs = math.log(2) + np.array([-0.1, 0.0, 0.1, 0.2])
    out = timescale_summary(np.exp(logs).tolist() + [math.nan])
    se_log = math.sqrt(0.05 / 3) / 2
    center = 2 * math.exp(0.05)
    assert out["n"] == 4
    assert out["estimate"] == pytest.approx(center)
    assert out["low"] == pytest.approx(center * math.exp(-3.182446 * se_log), rel=1e-6)
    assert out["high"] == pytest.approx(center * math.exp(3.182446 * se_log), rel=1e-6)
    assert out["se"] == pytest.approx(center * se_log)
    assert math.isnan(timescale_summary([2.0])["low"])


def test_estimate_gives_the_planted_per_pair_factors_and_their_interval():
    """Noise-free linear curves, EffOPD of seed i exactly s_i times faster: each pair gives
    s_i, the summary the t interval of the planted log s_i."""
    logs = math.log(2) + np.array([-0.1, 0.0, 0.1, 0.2])
    steps = np.arange(0, 129, dtype=float)
    pairs = [(curve_run("opd", i, line(DENSE), steps=DENSE),
              curve_run("effopd", i, line(math.exp(v) * DENSE), steps=DENSE,
                        costs={"tokens": 100 * steps}))
             for i, v in enumerate(logs)]
    result = estimate(pairs, n_bootstrap=20)
    assert result.pairs["timescale_steps"].to_numpy() == pytest.approx(np.exp(logs), abs=1e-6)
    assert result.pairs["timescale_tokens"].isna().all()  # OPD's run has no token costs
    expected = timescale_summary(np.exp(logs).tolist())
    summary = result.summary
    for key, column in (("estimate", "timescale_steps"), ("low", "timescale_steps_ci95_low"),
                        ("high", "timescale_steps_ci95_high"), ("se", "timescale_steps_se")):
        assert summary[column] == pytest.approx(expected[key], rel=1e-5)
    assert summary["timescale_steps_n_pairs"] == 4
    assert math.isnan(summary["timescale_tokens"])


def test_timescale_interval_on_planted_noise():
    """Curves f(t) and f(2 t) plus independent N(0, 0.006^2) noise per checkpoint (the
    study's 1024 x 2 samples give about 0.01 on an accuracy, a gain of 0.08): over 60
    studies of 6 pairs the interval covers 2 in at least 88% (nominal 95%), the median
    estimate is within 10% of 2, and the reported SE on the log scale matches the spread of
    the estimates within 30%."""
    rng = np.random.default_rng(0)
    estimates, covered, se_log = [], [], []
    for _ in range(60):
        values = [timescale(DENSE, saturating(DENSE) + rng.normal(0, 0.006, DENSE.size),
                            DENSE, saturating(2 * DENSE) + rng.normal(0, 0.006, DENSE.size))
                  for _ in range(6)]
        out = timescale_summary(values)
        estimates.append(out["estimate"])
        covered.append(out["low"] <= 2 <= out["high"])
        se_log.append(out["se"] / out["estimate"])
    assert np.mean(covered) >= 0.88
    assert abs(np.median(estimates) / 2 - 1) < 0.10
    spread = np.std(np.log(estimates), ddof=1)
    assert 0.7 < np.sqrt(np.mean(np.square(se_log))) / spread < 1.3


def test_table_and_markdown_carry_the_timescale_columns():
    rng = np.random.default_rng(3)
    runs = [run for pair in simulated_pairs(rng, 1.0, 4) for run in pair]
    table = speedup_table(runs, n_bootstrap=50)
    for column in ("timescale_steps", "timescale_steps_ci95_low", "timescale_steps_ci95_high",
                   "timescale_steps_se", "timescale_tokens", "timescale_cpu_s"):
        assert column in table
    null = summary_row(table, "null_opd_vs_opd")
    assert isinstance(null["null_timescale_contains_1"], bool | np.bool_)
    markdown = speedup_markdown(table)
    assert {"time-scale, steps", "time-scale, tokens", "time-scale, CPU s"} <= set(markdown)
    line_ = markdown[(markdown["comparison"] == "effopd_vs_opd")
                     & (markdown["seeds (ref / trt)"] == "median")].iloc[0]
    assert line_["time-scale, steps"].count("[") == 1
    # a table written before the time-scale columns existed still renders
    old = table.drop(columns=[c for c in table if c.startswith("timescale")
                              or c == "null_timescale_contains_1"])
    assert (speedup_markdown(old)["time-scale, steps"] == "").all()


# ------------------------------------------------------- learning-rate baselines (issue 19)


def test_curve_area_is_the_time_average_of_the_curve():
    # a line from 0 to 1 over the run: mean 1/2, whatever the spacing of the grid
    assert curve_run("opd", 0, DENSE / 128, DENSE).rates.shape == (13, 4)
    assert curve_area(curve_run("opd", 0, DENSE / 128, DENSE)) == pytest.approx(0.5)
    # 0.2 for the first quarter, then 0.6: trapezoid over the step 0 -> 32 ramp
    steps = np.array([0, 32, 128])
    assert curve_area(curve_run("opd", 0, [0.2, 0.6, 0.6], steps)) == pytest.approx(
        (0.5 * (0.2 + 0.6) * 32 + 0.6 * 96) / 128)


def lr_study(seeds=(0, 1, 2)):
    """OPD a saturating curve; OPD at 2x lr the same curve twice as fast; at 4x lr it
    rises four times as fast but to a plateau 0.05 lower; EffOPD twice as fast as OPD."""
    runs = []
    for s in seeds:
        runs += [curve_run("opd", s, saturating(DENSE), DENSE),
                 curve_run("opd-lr2x", s, saturating(2 * DENSE), DENSE),
                 curve_run("opd-lr4x", s, saturating(4 * DENSE) - 0.05 * (DENSE > 0), DENSE),
                 curve_run("effopd", s, saturating(2 * DENSE), DENSE)]
    return runs


def test_best_lr_is_the_largest_area_not_the_fastest_rise():
    runs = lr_study()
    assert best_lr_method(runs, ["opd", "opd-lr2x", "opd-lr4x"]) == "opd-lr2x"
    assert best_lr_method(runs, ["opd", "opd-lr4x"]) == "opd"  # 4x: fast but 0.05 lower


LR_METHODS = declared_methods({"methods": ["opd", "rl", "effopd"], "lr": 1e-3,
                               "lr_baselines": {"multipliers": [4, 2]}})


def test_table_compares_effopd_with_opd_at_default_and_best_lr():
    table = speedup_table(lr_study(), n_bootstrap=50, methods=LR_METHODS)
    summaries = table[table["row"] == "summary"].set_index("comparison")
    assert list(summaries.index) == ["effopd_vs_opd", "opd-lr2x_vs_opd", "opd-lr4x_vs_opd",
                                     "effopd_vs_best_lr_opd", "null_opd_vs_opd"]
    assert summaries.loc["effopd_vs_best_lr_opd", "reference"] == "opd-lr2x"
    assert summaries.loc["effopd_vs_best_lr_opd", "treatment"] == "effopd"
    # EffOPD is twice as fast as OPD (to the interpolant's error between grid points) and
    # exactly as fast as OPD at 2x lr (identical curves)
    assert summaries.loc["effopd_vs_opd", "timescale_steps"] == pytest.approx(2, rel=5e-3)
    assert summaries.loc["opd-lr2x_vs_opd", "timescale_steps"] == pytest.approx(2, rel=5e-3)
    assert summaries.loc["effopd_vs_best_lr_opd", "timescale_steps"] == pytest.approx(
        1, abs=1e-3)
    assert summaries.loc["null_opd_vs_opd", "timescale_steps"] == pytest.approx(1, abs=1e-6)
    assert bool(summaries.loc["effopd_vs_best_lr_opd", "non_inferior"])
    markdown = speedup_markdown(table, LR_METHODS)
    assert set(markdown["reference"]) == {"OPD", "OPD lr x2"}
    # without the declarations no run is a learning-rate baseline: EffOPD vs OPD only
    undeclared = speedup_table(lr_study(), n_bootstrap=50)
    assert set(undeclared["comparison"]) == {"effopd_vs_opd", "null_opd_vs_opd"}


def test_without_baselines_the_table_has_no_best_lr_rows():
    runs = [r for r in lr_study() if not r.method.startswith("opd-lr")]
    table = speedup_table(runs, n_bootstrap=50)
    assert set(table["comparison"]) == {"effopd_vs_opd", "null_opd_vs_opd"}

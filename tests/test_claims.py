"""The claims table: metrics on planted per-run files, verdicts with a minimum effect and
power, and exact agreement with the speed-up table."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from effopd.errors import InputError
from effopd.methods import declared_methods
from effopd.reports.claims import (
    METRICS,
    claims_table,
    combined_claim5,
    comparison_row,
    effective_rank_ratio,
    layer_concentration,
    mlp_allocation_ratio,
    run_of_dir,
    scaling_slope,
)
from effopd.reports.speedup import Run, speedup_table
from effopd.reports.stats import welch_ci

EFFECTS = {m.key: {"min_effect": 0.1, "paper_effect": 0.5} for m in METRICS}
EFFECTS["speedup"] = {"min_effect": 0.5, "paper_effect": 2.0}


def run_file(frame: pd.DataFrame, path, method: str = "opd", seed: int = 0) -> None:
    """Write a per-run analysis file as ``effopd analyze`` does: the run's identity first."""
    frame.insert(0, "seed", seed)
    frame.insert(0, "method", method)
    frame.to_csv(path, index=False)


def allocation(tmp_path, rows):
    run_file(pd.DataFrame(rows, columns=["step", "layer", "group", "numel", "delta_norm"]),
             tmp_path / "module_allocation.csv")


MINIMAL_RUN_FILES = {
    "update_norms.csv": {"step": [1], "block_norm": [1.0]},
    "module_allocation.csv": {"step": [1], "layer": [0], "module": ["up"], "group": ["mlp"],
                              "delta_norm": [1.0]},
    "spectra.csv": {"step": [1], "name": ["w"], "rows": [2], "cols": [2]},
    "alignment.csv": {"step": [1], "name": ["w"]},
    "embedding_cosine.csv": {"token_id": [1], "cosine": [0.5]},
    "scaling.csv": {"kind": ["final"], "alpha": [1.0], "avg@n": [0.5]},
    "modules.csv": {"intervention": ["full"], "avg@n": [0.5]},
}


def test_a_run_is_named_by_its_files_not_its_directory(tmp_path):
    run_dir = tmp_path / "rl" / "seed9"  # the directory says nothing the reader believes
    run_dir.mkdir(parents=True)
    for name, columns in MINIMAL_RUN_FILES.items():
        run_file(pd.DataFrame(columns), run_dir / name, "opd-lr2x", 4)
    assert run_of_dir(run_dir) == ("opd-lr2x", 4)
    run_file(pd.DataFrame(MINIMAL_RUN_FILES["spectra.csv"]), run_dir / "spectra.csv", "opd", 4)
    with pytest.raises(InputError, match=r"seed9: its files name different runs \(.*"
                                         r"spectra.csv: opd seed 4"):
        run_of_dir(run_dir)


def test_mlp_allocation_ratio_divides_out_parameter_count(tmp_path):
    # MLP holds 3/4 of the block parameters and 3/4 of ||Delta||^2: ratio exactly 1
    allocation(tmp_path, [(8, 0, "mlp", 300, 3.0), (8, 0, "attention", 100, math.sqrt(3)),
                          (8, None, "embedding", 1000, 50.0), (4, 0, "mlp", 300, 9.0)])
    assert mlp_allocation_ratio(tmp_path) == pytest.approx(1.0)
    allocation(tmp_path, [(8, 0, "mlp", 300, 3.0), (8, 0, "attention", 100, 0.0)])
    assert mlp_allocation_ratio(tmp_path) == pytest.approx(4 / 3)  # all of it in 3/4


def test_layer_concentration_is_zero_when_even_and_one_when_all_in_one_layer(tmp_path):
    allocation(tmp_path, [(8, 0, "mlp", 100, 1.0), (8, 1, "mlp", 100, 1.0),
                          (8, 2, "mlp", 100, 1.0)])
    assert layer_concentration(tmp_path) == pytest.approx(0.0, abs=1e-12)
    allocation(tmp_path, [(8, 0, "mlp", 100, 0.0), (8, 1, "mlp", 100, 2.0),
                          (8, 2, "mlp", 100, 0.0)])
    assert layer_concentration(tmp_path) == pytest.approx(1.0)
    # per parameter: a layer twice as large with twice the energy is still even
    allocation(tmp_path, [(8, 0, "mlp", 200, math.sqrt(2)), (8, 1, "mlp", 100, 1.0)])
    assert layer_concentration(tmp_path) == pytest.approx(0.0, abs=1e-12)


def test_scaling_slope_is_accuracy_per_unit_norm(tmp_path):
    run_file(pd.DataFrame({"step": [10], "block_norm": [2.0]}), tmp_path / "update_norms.csv")
    alphas = [0, 0.25, 0.5, 1.0, 2.0]
    run_file(pd.DataFrame({"kind": ["final"] * 5 + ["early"], "alpha": alphas + [4.0],
                           "avg@n": [0.3 + 0.1 * a * 2.0 for a in alphas[:4]] + [0.0, 0.99]}),
             tmp_path / "scaling.csv")
    # alpha <= 1 only (alpha 2 collapsed), early rows ignored: exactly 0.1 per unit
    assert scaling_slope(tmp_path) == pytest.approx(0.1)


def test_effective_rank_ratio_of_final_matrices(tmp_path):
    run_file(pd.DataFrame({"step": [5, 10, 10], "name": ["a", "a", "b"], "rows": [4, 4, 8],
                           "cols": [8, 8, 2], "effective_rank": [4.0, 2.0, 1.0]}),
             tmp_path / "spectra.csv")
    assert effective_rank_ratio(tmp_path) == pytest.approx((2 / 4 + 1 / 2) / 2)


def test_comparison_row_is_welch_with_relative_minimum_effect_and_power():
    opd = pd.Series([1.30, 1.32, 1.28, 1.31])
    rl = pd.Series([1.00, 1.02, 0.98])
    row = comparison_row(METRICS[0], opd, rl, {"min_effect": 0.1, "paper_effect": 0.5})
    welch = welch_ci(opd, rl)
    assert (row["ci95_low"], row["ci95_high"]) == (welch.low, welch.high)
    assert row["min_effect"] == pytest.approx(0.1 * 1.0)  # 10% of |mean(RL)|
    assert row["verdict"] == "holds"
    assert row["mde80"] < row["paper_effect"] and row["seeds_for_paper_effect"] == 2
    # a significant but small difference is not a meaningful effect
    tight = pd.Series([1.000, 1.001, 0.999])
    small = comparison_row(METRICS[0], opd - 0.25, tight,
                           {"min_effect": 0.1, "paper_effect": 0.5})
    assert small["ci95_low"] > 0 and small["verdict"] == "does not hold"


def test_claims_table_copies_the_speedup_table_exactly(tmp_path):
    grid = np.arange(0, 49, 6)
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(3):
        for method, speed in (("opd", 1.0), ("effopd", 1.5)):
            curve = np.minimum(0.3 + 0.3 * grid * speed / 24, 0.6)
            rates = rng.binomial(8, np.repeat(curve[:, None], 64, axis=1)) / 8
            runs.append(Run(method, seed, grid, rates))
    speedup_table(runs, n_bootstrap=200).to_csv(tmp_path / "speedup.csv", index=False)
    speedup = pd.read_csv(tmp_path / "speedup.csv")
    values = pd.DataFrame([{"metric": m.key, "method": method, "seed": s,
                            "value": 1.0 + (method == "opd") * 0.5 + s * 0.01}
                           for m in METRICS for method in ("opd", "rl") for s in range(3)])
    table = claims_table(values, speedup, EFFECTS)
    assert list(table["metric"])[:len(METRICS)] == [m.key for m in METRICS]
    summary = speedup[(speedup["comparison"] == "effopd_vs_opd")
                      & (speedup["row"] == "summary")].iloc[0]
    for unit in ("steps", "tokens", "cpu_s"):
        row = table[table["metric"] == f"speedup_{unit}"].iloc[0]
        for column, source in (("estimate", ""), ("ci95_low", "_ci95_low"),
                               ("ci95_high", "_ci95_high")):
            left, right = row[column], summary[f"speedup_{unit}{source}"]
            assert (left == right) or (math.isnan(left) and math.isnan(right))
    final = table[table["metric"] == "final_accuracy"].iloc[0]
    assert final["estimate"] == summary["final_accuracy_diff"]
    # the time-scale row names its horizon: the common grid's last step, 48
    row = table[table["metric"] == "timescale_steps"].iloc[0]
    assert "in optimizer steps at the horizon of step 48 " in row["definition"]
    assert row["estimate"] == summary["timescale_steps"]
    assert {"mde80", "seeds_for_paper_effect", "verdict"} <= set(table.columns)
    # claims 1-4: OPD above RL by 0.5 = 50% of |RL| with tiny spread: every one "holds"
    # in the claimed direction (3b and 4 claim OPD lower, so they do not hold)
    verdicts = dict(zip(table["metric"], table["verdict"], strict=False))
    assert verdicts["scaling_slope"] == "holds"
    assert verdicts["effective_rank_ratio"] == "does not hold"


def test_claims_carry_effopd_against_opd_at_its_best_learning_rate(tmp_path):
    """EffOPD 1.5x OPD's speed; OPD at 2x lr as fast as EffOPD: against the best lr the
    time-scale speed-up is 1 (claim 5 against the default still holds)."""
    grid = np.arange(0, 49, 6)
    rng = np.random.default_rng(1)
    runs = []
    for seed in range(4):
        for method, speed in (("opd", 1.0), ("effopd", 1.5), ("opd-lr2x", 1.5)):
            curve = 0.3 + 0.3 * (1 - np.exp(-grid * speed / 12))
            rates = rng.binomial(8, np.repeat(curve[:, None], 512, axis=1)) / 8
            runs.append(Run(method, seed, grid, rates))
    methods = declared_methods({"methods": ["opd", "rl", "effopd"], "lr": 1e-3,
                                "lr_baselines": {"multipliers": [2]}})
    speedup = speedup_table(runs, n_bootstrap=100, methods=methods)
    values = pd.DataFrame([{"metric": m.key, "method": method, "seed": s, "value": 1.0 + s}
                           for m in METRICS for method in ("opd", "rl") for s in range(3)])
    table = claims_table(values, speedup, EFFECTS, methods=methods).set_index("metric")
    best = table.loc["timescale_steps_vs_best_lr"]
    assert best["b"] == "opd-lr2x" and best["a"] == "effopd"
    assert "OPD lr x2's" in best["definition"]  # the baseline's declared label
    assert best["ci95_low"] < 1 < best["ci95_high"]
    assert best["verdict"] != "holds"
    summary = speedup[(speedup["comparison"] == "effopd_vs_best_lr_opd")
                      & (speedup["row"] == "summary")].iloc[0]
    assert best["estimate"] == summary["timescale_steps"]
    assert table.loc["timescale_steps", "b"] == "opd"
    assert table.loc["timescale_steps", "ci95_low"] > 1


@pytest.mark.parametrize(("speedup", "final", "expected"), [
    ("holds", "holds", "holds"),
    ("holds", "inconclusive", "inconclusive"),
    ("holds", "does not hold", "does not hold"),      # fast but worse
    ("does not hold", "holds", "does not hold"),      # as good but not faster
    ("inconclusive", "inconclusive", "inconclusive"),
])
def test_claim_5_needs_speed_and_non_inferiority(speedup, final, expected):
    row = {"verdict": "", "mde80_below_paper_effect": True, "seeds_for_paper_effect": 4,
           "n_a": 3, "n_b": 3}
    combined = combined_claim5({**row, "verdict": speedup}, {**row, "verdict": final})
    assert combined["verdict"] == expected and combined["metric"] == "claim_5"



def test_preconditions_are_paired_per_problem_in_a_crossed_design():
    from effopd.reports.claims import precondition_rows

    grid = np.array([0, 10, 20, 32])  # the late step: below 32, nearest 0.75 x 32 = 24 -> 20
    base = [0, 0.25, 0.5, 0.5]
    seed0 = np.array([base, base, [0.25, 0.5, 0.5, 0.5], [0.25, 0.5, 0.5, 0.75]])
    seed1 = np.array([base, base, [0.25, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
    gain, late = precondition_rows([(grid, seed0), (grid, seed1)], 0.01, 0.2, 0.25)
    # gain y = (0.25, 0.25, 0, 0.25 | 0.25, 0, 0.25, 0.25): mean 0.1875; row means equal
    # (MS_A = 0), column means (0.25, 0.125, 0.125, 0.25): MS_B = 2 x 0.0625 / 3 = 1/96;
    # residuals +-0.125 on problems 1, 2: MS_E = 0.0625 / 3 = 1/48 > both, so both
    # components truncate: Var = MS_E / 8 = 1/384 with MS_E's 3 df; t_{0.975, 3} = 3.182446
    assert gain["estimate"] == pytest.approx(0.1875)
    assert gain["ci95_high"] - 0.1875 == pytest.approx(3.182446 * math.sqrt(1 / 384), rel=1e-6)
    assert gain["verdict"] == "holds" and gain["claim"] == "0a"
    # late (step 20 -> 32): y = (0, 0, 0, 0.25 | 0, 0.25, 0.25, 0.25), mean 0.125; row
    # means 0.0625, 0.1875: MS_A = 4 x 2 x 0.0625^2 = 3/96; column means (0, 0.125, 0.125,
    # 0.25): MS_B = 2 x 2 x 0.125^2 / 3 = 2/96; residuals +-0.0625: MS_E = 8 x 0.0625^2 / 3
    # = 1/96. Both components kept: Var = (3 + 2 - 1) / 96 / 8 = 1/192; Satterthwaite
    # df = 4^2 / (3^2 / 1 + 2^2 / 3 + 1^2 / 3) = 1.5 (t_{0.975, 1.5} = 6.017)
    assert late["estimate"] == pytest.approx(0.125)
    half = float(stats.t.ppf(0.975, 1.5)) * math.sqrt(1 / 192)
    assert late["ci95_high"] - 0.125 == pytest.approx(half, rel=1e-6)
    assert "step 20 to step 32" in late["definition"]
    assert late["verdict"] == "inconclusive"  # [-0.31, 0.56]


def test_gain_row_states_the_share_of_the_teacher_student_gap():
    from effopd.reports.claims import gap_share, precondition_rows

    # gain 0.2 [0.1, 0.3] over a base of 0.3 with a teacher at 0.7: 50% [25%, 75%]
    assert gap_share(0.2, 0.1, 0.3, 0.3, 0.7) == pytest.approx((0.5, 0.25, 0.75))
    assert all(math.isnan(x) for x in gap_share(0.2, 0.1, 0.3, 0.7, 0.7))
    grid = np.array([0, 10, 20, 32])
    base = [0, 0.25, 0.5, 0.5]  # step-0 mean 0.3125 in both seeds
    seed0 = np.array([base, base, [0.25, 0.5, 0.5, 0.5], [0.25, 0.5, 0.5, 0.75]])
    seed1 = np.array([base, base, [0.25, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
    gain, _ = precondition_rows([(grid, seed0), (grid, seed1)], 0.01, 0.2, 0.25,
                                teacher_accuracy=0.6875)
    # gain 0.1875 (hand-computed above) over a gap of 0.6875 - 0.3125 = 0.375: one half
    assert gain["gap_closed"] == pytest.approx(0.5)
    assert gain["gap_closed_high"] == pytest.approx(gain["ci95_high"] / 0.375)
    assert "50% [" in gain["definition"] and "teacher 68.8%" in gain["definition"]


@pytest.mark.parametrize(("seeds", "sigma_seed", "low", "high"), [
    (6, 0.1, 0.94, 0.975),   # seeds dominate, 6 of them
    (3, 0.1414, 0.91, 0.96),  # P sigma_a^2 / sigma_e^2 = 25, 3 seeds: about 0.93 (documented)
    (6, 0.0, 0.95, 0.99),    # no seed effect: truncation makes it conservative
])
def test_crossed_mean_is_unbiased_and_covers(seeds, sigma_seed, low, high):
    """Planted components sigma_a (seeds), sigma_b = 0.3 (problems), sigma_e = 0.4, P = 200:
    Var(grand mean) = sigma_a^2 / S + 0.09 / P + 0.16 / (S P) exactly. The estimated
    variance averages to it where the seed component is far from truncation; the 95%
    t interval covers the mean at about its nominal rate; adding var_s / S and var_i / P
    instead exceeds the estimate by exactly MS_E / (S P), whose mean is 0.16 / (S P)."""
    from effopd.reports.stats import crossed_mean

    rng = np.random.default_rng(0)
    problems, reps = 200, 3000
    true_var = sigma_seed ** 2 / seeds + 0.3 ** 2 / problems + 0.4 ** 2 / (seeds * problems)
    variances, covered, excess = [], 0, []
    for _ in range(reps):
        y = (rng.normal(0, sigma_seed, (seeds, 1)) + rng.normal(0, 0.3, (1, problems))
             + rng.normal(0, 0.4, (seeds, problems)))
        mean, se, df = crossed_mean(y)
        variances.append(se ** 2)
        covered += abs(mean) <= float(stats.t.ppf(0.975, df)) * se
        naive = y.mean(axis=1).var(ddof=1) / seeds + y.mean(axis=0).var(ddof=1) / problems
        excess.append(naive - se ** 2)
    assert low <= covered / reps <= high
    if sigma_seed:
        assert np.mean(variances) == pytest.approx(true_var, rel=0.04)
        assert np.mean(excess) == pytest.approx(0.4 ** 2 / (seeds * problems), rel=0.05)


def planted_opd_runs(final_shift, late_shift, seeds=3, problems=400):
    """OPD runs on a grid 0, 8, 16, 24, 32: base rates cycle 0, 0.25, 0.5, 0.75; seed s adds
    ``late_shift`` at step 24 and ``final_shift`` at step 32 on problems whose index is
    not s mod 4 (so problems and seeds both vary)."""
    grid = np.array([0, 8, 16, 24, 32])
    base = np.tile([0.0, 0.25, 0.5, 0.75], problems // 4)
    runs = []
    for s in range(seeds):
        moved = (np.arange(problems) % 4 != s % 4).astype(float)
        rates = np.stack([base, base, base, base + late_shift * moved,
                          base + final_shift * moved])
        runs.append((grid, np.clip(rates, 0, 1)))
    return runs


@pytest.mark.parametrize(("final", "late", "learned", "plateau"), [
    (0.0, 0.0, "does not hold", "holds"),     # no learning: gain exactly 0
    (0.25, 0.0, "holds", "does not hold"),    # still rising over the last quarter
    (0.25, 0.25, "holds", "holds"),           # learned, flat from step 24
    (0.25, 0.5, "holds", "does not hold"),    # falling from step 24 to 32
])
def test_claims_are_not_assessable_without_learning_or_plateau(final, late, learned, plateau):
    values = pd.DataFrame([{"metric": m.key, "method": method, "seed": s,
                            "value": 1.0 + (method == "opd") * 0.5 + s * 0.01}
                           for m in METRICS for method in ("opd", "rl") for s in range(3)])
    from effopd.reports.claims import gate_verdicts
    table = claims_table(values, None, EFFECTS, opd_runs=planted_opd_runs(final, late))
    rows = table.set_index("metric")
    assert list(table["claim"])[:2] == ["0a", "0b"]
    assert rows.loc["opd_gain", "verdict"] == learned
    assert rows.loc["opd_late_gain", "verdict"] == plateau
    assert rows.loc["scaling_slope", "statistical_verdict"] == "holds"
    claim5 = gate_verdicts([{"claim": "5", "metric": metric, "verdict": "holds"}
                            for metric in ("timescale_steps", "timescale_cpu_s_vs_best_lr",
                                           "speedup_steps", "final_accuracy", "claim_5")],
                           table.iloc[:2].to_dict("records"))
    verdicts = [row["verdict"] for row in claim5]
    if learned != "holds":
        assert set(table["verdict"].iloc[2:]) == {"not assessable (OPD's gain not shown)"}
        assert set(verdicts) == {"not assessable (OPD's gain not shown)"}
    else:  # claims 1-4 keep their verdicts; claim 5 at its horizon needs only 0a, while
        # the rows about convergence need the plateau as well
        assert rows.loc["scaling_slope", "verdict"] == "holds"
        assert verdicts[:2] == ["holds", "holds"]
        assert set(verdicts[2:]) == {"holds" if plateau == "holds"
                                     else "not assessable (OPD's plateau not shown)"}


def test_preconditions_refuse_a_grid_without_the_base_or_later_checkpoints():
    from effopd.reports.claims import precondition_rows

    runs = planted_opd_runs(0.25, 0.25)
    with pytest.raises(ValueError, match="step 0"):
        precondition_rows([(steps[1:], rates[1:]) for steps, rates in runs], 0.01, 0.01, 0.25)
    with pytest.raises(ValueError, match="two later"):
        precondition_rows([(steps[:2], rates[:2]) for steps, rates in runs], 0.01, 0.01, 0.25)


def test_a_pinned_bootstrap_gives_no_minimum_detectable_effect():
    """Three of five EffOPD runs identical to OPD's pin the bootstrap median at 1: a bootstrap
    SE of 0 is no measurement of power, so claim 5's speed-up rows carry no MDE."""
    from effopd.reports.claims import speedup_rows

    summary = {"comparison": "effopd_vs_opd", "row": "summary", "n_pairs": 5, "reached": "5/5",
               "final_accuracy_diff": 0.0, "final_accuracy_diff_ci95_low": -0.01,
               "final_accuracy_diff_ci95_high": 0.01, "final_accuracy_diff_se": 0.005}
    for unit, se in (("steps", 0.0), ("tokens", 0.1), ("cpu_s", 0.1)):
        summary |= {f"speedup_{unit}": 1.0, f"speedup_{unit}_ci95_low": 0.0,
                    f"speedup_{unit}_ci95_high": 1.9, f"speedup_{unit}_se": se}
    rows = {r["metric"]: r for r in speedup_rows(pd.DataFrame([summary]),
                                                  {"min_effect": 0.5, "paper_effect": 2.0}, 0.01)}
    assert math.isnan(rows["speedup_steps"]["mde80"])
    assert rows["speedup_steps"]["seeds_for_paper_effect"] is None
    assert not rows["speedup_steps"]["mde80_below_paper_effect"]
    assert rows["speedup_tokens"]["mde80"] == pytest.approx(2.8016 * 0.1, rel=1e-4)
    assert rows["final_accuracy"]["test"].startswith("paired per seed and problem")


def test_tabulate_claims_needs_no_eval_csvs() -> None:
    """The claims read --run-dirs and --opd-evals; --eval-csvs is optional (and unread)."""
    from effopd.cli import build_parser

    args = build_parser().parse_args(["tabulate-claims", "--run-dirs", "a", "--speedup", "s.csv",
                                      "--claims", "{}", "--out", "claims.csv"])
    assert args.eval_csvs is None and args.run_dirs == ["a"]
    tabulate = build_parser().parse_args(["tabulate-analysis", "--run-dirs", "a", "--eval-csvs",
                                          "e.csv", "--out-dir", "t"])
    assert tabulate.eval_csvs == ["e.csv"]


def test_sensitivity_pairs_are_compared_and_marked_with_their_learning_rates():
    """Primary: OPD above RL by 50% of |RL| (holds). Sensitivity pair (each at another lr):
    equal values (does not hold). Each row names its role and both methods' lrs."""
    from effopd.methods import methods_as_json, methods_from_json
    from effopd.reports.claims import claims_markdown

    training = {"methods": ["opd", "rl", "effopd",
                            {"name": "opd-best", "algorithm": "opd", "lr": 3e-4},
                            {"name": "rl-best", "algorithm": "rl", "lr": 6e-5}],
                "lr": 1e-4, "rl": {"lr": 1e-4}}
    methods = methods_from_json(methods_as_json(declared_methods(training), training))
    rng = np.random.default_rng(3)
    level = {"opd": 1.5, "rl": 1.0, "opd-best": 1.0, "rl-best": 1.0}
    values = pd.DataFrame([{"metric": m.key, "method": name, "seed": s,
                            "value": level[name] + 0.01 * rng.standard_normal()}
                           for m in METRICS for name in level for s in range(4)])
    table = claims_table(values, None, EFFECTS, methods=methods,
                         sensitivity=[{"opd": "opd-best", "rl": "rl-best"}])
    assert list(table.columns[list(table.columns).index("b") + 1:][:3]) == \
        ["comparison", "a_lr", "b_lr"]
    primary = table[table["comparison"] == "primary"].set_index("metric")
    other = table[table["comparison"] == "sensitivity"].set_index("metric")
    assert len(primary) == len(other) == len(METRICS)
    assert primary.loc["scaling_slope", "verdict"] == "holds"
    assert other.loc["scaling_slope", "verdict"] == "does not hold"
    assert set(primary["a_lr"]) == {1e-4} and set(primary["b_lr"]) == {1e-4}
    assert set(other["a"]) == {"opd-best"} and set(other["a_lr"]) == {3e-4}
    assert set(other["b"]) == {"rl-best"} and set(other["b_lr"]) == {6e-5}
    shown = claims_markdown(table, methods)["compared"]
    assert shown.iloc[0] == "primary: OPD (lr 1e-4) vs RL (GRPO) (lr 1e-4)"
    assert shown.iloc[-1] == "sensitivity: opd-best (lr 3e-4) vs rl-best (lr 6e-5)"
    with pytest.raises(ValueError, match="no analysed runs of rl-2"):
        claims_table(values, None, EFFECTS, sensitivity=[{"opd": "opd", "rl": "rl-2"}])


def test_timescale_holds_is_refused_when_effopd_ends_significantly_below_the_reference():
    """s > 1 means y_t(H) = F_r(s H) >= F_r(H) for an increasing reference: a final
    difference wholly below 0 contradicts the fit (study: a flat EffOPD at 2e-5 matched to
    the first-step dip of OPD at 3e-4 gave s = 5.5 while ending 7.5 points below)."""
    from effopd.reports.claims import timescale_fit_verdict
    below = pd.Series({"final_accuracy_diff_ci95_high": -0.048})
    covers = pd.Series({"final_accuracy_diff_ci95_high": 0.012})
    assert timescale_fit_verdict("holds", below, "OPD lr x15").startswith(
        "not assessable (time-scale model does not fit: EffOPD ends below OPD lr x15")
    assert timescale_fit_verdict("holds", covers, "OPD") == "holds"
    assert timescale_fit_verdict("does not hold", below, "OPD") == "does not hold"
    assert timescale_fit_verdict("holds", pd.Series({}), "OPD") == "holds"

"""The claims table: metrics on planted per-run files, verdicts with a minimum effect and
power, and exact agreement with the speed-up table."""

import math

import numpy as np
import pandas as pd
import pytest

from effopd.reports.claims import (
    METRICS,
    claims_table,
    combined_claim5,
    comparison_row,
    effective_rank_ratio,
    layer_concentration,
    mlp_allocation_ratio,
    scaling_slope,
)
from effopd.reports.speedup import Run, speedup_table
from effopd.reports.stats import welch_ci

EFFECTS = {m.key: {"min_effect": 0.1, "paper_effect": 0.5} for m in METRICS}
EFFECTS["speedup"] = {"min_effect": 0.5, "paper_effect": 2.0}


def allocation(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["step", "layer", "group", "numel", "delta_norm"])
    frame.to_csv(tmp_path / "module_allocation.csv", index=False)


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
    pd.DataFrame({"step": [10], "block_norm": [2.0]}).to_csv(tmp_path / "update_norms.csv",
                                                            index=False)
    alphas = [0, 0.25, 0.5, 1.0, 2.0]
    pd.DataFrame({"kind": ["final"] * 5 + ["early"], "alpha": alphas + [4.0],
                  "avg@n": [0.3 + 0.1 * a * 2.0 for a in alphas[:4]] + [0.0, 0.99]}
                 ).to_csv(tmp_path / "scaling.csv", index=False)
    # alpha <= 1 only (alpha 2 collapsed), early rows ignored: exactly 0.1 per unit
    assert scaling_slope(tmp_path) == pytest.approx(0.1)


def test_effective_rank_ratio_of_final_matrices(tmp_path):
    pd.DataFrame({"step": [5, 10, 10], "rows": [4, 4, 8], "cols": [8, 8, 2],
                  "effective_rank": [4.0, 2.0, 1.0]}).to_csv(tmp_path / "spectra.csv",
                                                            index=False)
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
    assert {"mde80", "seeds_for_paper_effect", "verdict"} <= set(table.columns)
    # claims 1-4: OPD above RL by 0.5 = 50% of |RL| with tiny spread: every one "holds"
    # in the claimed direction (3b and 4 claim OPD lower, so they do not hold)
    verdicts = dict(zip(table["metric"], table["verdict"], strict=False))
    assert verdicts["scaling_slope"] == "holds"
    assert verdicts["effective_rank_ratio"] == "does not hold"


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


def opd_curves(finals, lates, base=0.30, base_se=0.005, last=32, late=24):
    """OPD training curves: step 0 at ``base`` (shared), ``lates`` at step ``late``,
    ``finals`` at step ``last``, one seed per entry."""
    rows = [{"method": "opd", "seed": s, "step": step, "avg@n": value, "accuracy_se": base_se}
            for s, (final, late_value) in enumerate(zip(finals, lates, strict=True))
            for step, value in ((0, base), (8, base), (late, late_value), (last, final))]
    return pd.DataFrame(rows)


def test_preconditions_gain_counts_the_base_error_and_plateau_is_paired():
    from scipy import stats

    from effopd.reports.claims import precondition_rows

    finals, lates = [0.40, 0.42, 0.44], [0.398, 0.42, 0.442]
    gain, late = precondition_rows(opd_curves(finals, lates), 0.01, 0.01, 0.25)
    # gains 0.10, 0.12, 0.14: mean 0.12, seed variance 0.0004 / 3, base SE 0.005
    seed_var, base_var = 0.0004 / 3, 0.005 ** 2
    se = math.sqrt(seed_var + base_var)
    df = (seed_var + base_var) ** 2 / (seed_var ** 2 / 2)
    assert gain["estimate"] == pytest.approx(0.12)
    assert gain["ci95_high"] - gain["estimate"] == pytest.approx(stats.t.ppf(0.975, df) * se)
    assert gain["verdict"] == "holds" and gain["claim"] == "0a"
    # late gains +0.002, 0, -0.002 from step 24 (closest to 0.75 x 32): mean 0, SE 0.002/sqrt(3),
    # half-width t_2 x SE = 0.005 < 0.01
    half = stats.t.ppf(0.975, 2) * 0.002 / math.sqrt(3)
    assert late["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert late["ci95_high"] == pytest.approx(half)
    assert late["verdict"] == "holds" and "step 24 to step 32" in late["definition"]


@pytest.mark.parametrize(("finals", "lates", "learned", "plateau"), [
    ([0.301, 0.299, 0.300], [0.300, 0.300, 0.300], "does not hold", "holds"),  # no learning
    ([0.40, 0.42, 0.44], [0.33, 0.352, 0.368], "holds", "does not hold"),       # still rising
])
def test_claims_are_not_assessable_without_learning_or_plateau(finals, lates, learned,
                                                                 plateau):
    values = pd.DataFrame([{"metric": m.key, "method": method, "seed": s,
                            "value": 1.0 + (method == "opd") * 0.5 + s * 0.01}
                           for m in METRICS for method in ("opd", "rl") for s in range(3)])
    speedup_like = [{"claim": "5", "metric": "speedup_steps", "verdict": "holds"}]
    table = claims_table(values, None, EFFECTS, curves=opd_curves(finals, lates))
    from effopd.reports.claims import gate_verdicts
    rows = table.set_index("metric")
    assert rows.loc["opd_gain", "verdict"] == learned
    assert rows.loc["opd_late_gain", "verdict"] == plateau
    gated = gate_verdicts(speedup_like, table.iloc[:2].to_dict("records"))[0]
    if learned != "holds":
        assert set(table["verdict"].iloc[2:]) == {"not assessable (OPD's gain not shown)"}
        assert gated["verdict"] == "not assessable (OPD's gain not shown)"
    else:  # claims 1-4 keep their verdicts; claim 5 needs the plateau
        assert rows.loc["scaling_slope", "verdict"] == "holds"
        assert gated["verdict"] == "not assessable (OPD's plateau not shown)"
    assert rows.loc["scaling_slope", "statistical_verdict"] == "holds"

"""EffOPD's step-size ablation: planted speed-ups per variant come back, row by row."""

import numpy as np
import pytest

from effopd.reports.ablation import ablation_markdown, ablation_table
from effopd.reports.speedup import Run

GRID = np.arange(0, 49, 6)
STEPS = np.arange(0, 49, dtype=float)
EFFOPD = {"max_iterations": 5, "initial_factor": 2.0, "schedule": "powers_of_two",
          "search_every": 8, "validation_size": None, "validation_benchmark": "val"}


def linear_run(method, seed, steps_to_plateau, tokens_per_step=100.0):
    """Every problem at 0.3 + 0.3 * step / s until 0.6 (no noise): time to 90% of the gain
    is 0.9 s steps."""
    accuracy = np.minimum(0.3 + 0.3 * GRID / steps_to_plateau, 0.6)
    rates = np.repeat(accuracy[:, None], 8, axis=1)
    return Run(method, seed, GRID, rates, STEPS,
               {"tokens": STEPS * tokens_per_step, "cpu_s": STEPS * tokens_per_step / 50})


def test_each_variant_gets_its_planted_speedup_in_every_unit():
    runs = []
    for seed in range(3):
        runs += [linear_run("opd", seed, 24),
                 linear_run("effopd", seed, 12, tokens_per_step=150),    # 2x, 1.33x tokens
                 linear_run("effopd-slow", seed, 24),                    # 1x
                 linear_run("effopd-every4", seed, 6, tokens_per_step=300)]  # 4x, 1.33x tokens
    variants = {"slow": {"max_iterations": 1}, "every4": {"schedule": "every_k",
                                                           "search_every": 4}}
    table = ablation_table(runs, EFFOPD, variants, {"bootstrap": 200})
    assert table["variant"].tolist() == ["authors", "slow", "every4"]
    assert table["speedup_steps"].tolist() == pytest.approx([2.0, 1.0, 4.0])
    assert table["speedup_tokens"].tolist() == pytest.approx([2 / 1.5, 1.0, 4 / 3])
    assert table["speedup_cpu_s"].tolist() == pytest.approx([2 / 1.5, 1.0, 4 / 3])
    # no noise: every bootstrap replicate equals the estimate
    assert table["speedup_steps_ci95_low"].tolist() == pytest.approx([2.0, 1.0, 4.0])
    assert table["speedup_steps_ci95_high"].tolist() == pytest.approx([2.0, 1.0, 4.0])
    assert table["final_accuracy_diff"].tolist() == pytest.approx([0, 0, 0])
    assert table["non_inferior"].all()
    assert table["max_iterations"].tolist() == [5, 1, 5]
    assert table["search_every"].isna().tolist() == [True, True, False]
    assert table["search_every"].tolist()[2] == 4
    assert table["seeds"].tolist() == ["0 1 2"] * 3
    text = ablation_markdown(table)
    assert text["schedule"].tolist() == ["powers_of_two", "powers_of_two", "every 4 steps"]
    assert text["speed-up, steps"].tolist()[2] == "4 [4, 4]"


def test_a_variant_without_opd_partners_is_an_error():
    runs = [linear_run("opd", 0, 24), linear_run("effopd", 0, 12),
            linear_run("effopd-x", 5, 12)]
    with pytest.raises(ValueError, match="no run of effopd-x with an OPD run of the same seed"):
        ablation_table(runs, EFFOPD, {"x": {"max_iterations": 2}}, {"bootstrap": 100})

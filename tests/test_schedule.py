"""The training schedule every engine reads: grid, learning rates, learning-rate baselines."""

import pytest

from effopd.training.schedule import (
    baseline_training,
    lr_baseline_name,
    lr_baselines,
    lr_multiplier,
    method_lr,
)

TRAINING = {"methods": ["opd", "rl", "effopd"], "lr": 3e-4, "warmup_steps": 0,
            "rl": {"lr": 6e-5}, "lr_baselines": {"multipliers": [2, 4, 0.5],
                                                 "warmup_steps": None}}


def test_baseline_names_round_trip():
    assert lr_baselines(TRAINING) == ["opd-lr2x", "opd-lr4x", "opd-lr0.5x"]
    assert [lr_multiplier(m) for m in lr_baselines(TRAINING)] == [2, 4, 0.5]
    assert lr_baseline_name(1.5) == "opd-lr1.5x"
    for other in ("opd", "effopd", "rl", "effopd-small_val", "opd-lrx", "opd-lr2"):
        assert lr_multiplier(other) is None


def test_baselines_exist_only_beside_opd():
    assert lr_baselines({**TRAINING, "methods": ["rl", "effopd"]}) == []
    assert lr_baselines({"methods": ["opd"], "lr": 1e-3}) == []


def test_baseline_training_scales_the_lr_and_keeps_everything_else():
    two = baseline_training(TRAINING, "opd-lr2x")
    assert method_lr(two, "opd") == pytest.approx(6e-4)
    assert two["warmup_steps"] == 0  # null: OPD's own
    assert {k: v for k, v in two.items() if k not in ("lr", "warmup_steps")} == {
        k: v for k, v in TRAINING.items() if k not in ("lr", "warmup_steps")}
    warm = baseline_training({**TRAINING, "lr_baselines": {"multipliers": [4],
                                                           "warmup_steps": 8}}, "opd-lr4x")
    assert warm["lr"] == pytest.approx(1.2e-3) and warm["warmup_steps"] == 8
    for method in ("opd", "rl", "effopd"):
        assert baseline_training(TRAINING, method) is TRAINING

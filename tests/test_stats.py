"""Intervals, power and the verdict rule against exact or independent answers."""

import math

import numpy as np
import pytest
from scipy import stats

from effopd.reports.stats import (
    Z_POWER_80,
    percentile_interval,
    seeds_for_effect,
    t_test_power,
    verdict,
    welch_ci,
    welch_mde,
)


def test_welch_interval_equals_scipy():
    a, b = [0.41, 0.44, 0.39, 0.47], [0.30, 0.36, 0.28]
    result = welch_ci(a, b)
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert result.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert (result.low, result.high) == pytest.approx((reference.low, reference.high), rel=1e-12)


def test_welch_needs_two_values_per_side():
    assert math.isnan(welch_ci([1.0], [0.0, 1.0]).low)


def test_mde_has_the_stated_power_and_tends_to_the_normal_formula():
    se, df = 0.02, 4.0
    mde = welch_mde(se, df)
    assert t_test_power(mde, se, df) == pytest.approx(0.8, abs=1e-9)
    # few degrees of freedom need a larger effect than the normal-theory 2.80 se
    assert mde > Z_POWER_80 * se
    assert welch_mde(se, 1e7) == pytest.approx(Z_POWER_80 * se, rel=1e-4)
    assert pytest.approx(2.8016, abs=1e-4) == Z_POWER_80


def test_seeds_for_a_one_sd_effect_is_the_textbook_17():
    # two-sample t test, Cohen's d = 1, alpha 0.05 two-sided, power 0.8: 17 per group
    assert seeds_for_effect(1.0, 1.0, 1.0) == 17
    # d = 0.5 needs 64 per group
    assert seeds_for_effect(0.5, 1.0, 1.0) == 64


def test_percentile_interval_ranks_censored_lowest():
    replicates = [-math.inf] * 10 + list(np.linspace(1, 2, 90))
    low, high = percentile_interval(replicates)
    assert low == -math.inf and high == pytest.approx(2.0, abs=0.03)
    low, _ = percentile_interval([-math.inf] * 2 + list(np.linspace(1, 2, 98)))
    assert math.isfinite(low)


@pytest.mark.parametrize(("low", "high", "direction", "delta", "expected"), [
    (0.2, 0.4, +1, 0.1, "holds"),
    (0.05, 0.4, +1, 0.1, "inconclusive"),      # above 0 but not surely above the minimum
    (0.01, 0.05, +1, 0.1, "does not hold"),    # significant but too small to matter
    (-0.4, -0.2, +1, 0.0, "does not hold"),
    (-0.4, -0.2, -1, 0.1, "holds"),            # the paper claims lower
    (math.nan, 1.0, +1, 0.0, "inconclusive"),
])
def test_verdict_rule(low, high, direction, delta, expected):
    assert verdict(low, high, direction, delta) == expected


def test_problem_mean_se_is_the_sd_of_problem_rates_over_root_p():
    from effopd.reports.stats import problem_mean_se

    rates = [0.0, 0.5, 1.0, 0.5]  # mean 0.5, sd (ddof 1) sqrt(1/6)
    assert problem_mean_se(rates) == pytest.approx(math.sqrt(1 / 6) / 2)
    assert math.isnan(problem_mean_se([0.5]))

"""Summary statistics over seeds."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci95(values) -> tuple[float, float, float]:
    """Mean and 95% confidence interval (Student t, n - 1 degrees of freedom).

    ``(mean, low, high)``; NaNs are dropped; one value gives a degenerate
    interval ``(x, nan, nan)`` and none gives all NaN.
    """
    array = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(array.mean())
    if array.size == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size))
    return mean, mean - half, mean + half

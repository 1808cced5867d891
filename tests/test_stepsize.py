"""The step-size map (effopd/reports/stepsize.py): planted curves with known speed-ups."""

import numpy as np
import pandas as pd
import pytest

from effopd.methods import declared_methods
from effopd.reports.speedup import Run
from effopd.reports.stepsize import (
    COLUMNS,
    cells,
    search_counts,
    stepsize_map,
    stepsize_markdown,
)

GRID = np.array([0, 1, 2, 4, 8, 16, 32, 48, 64, 80, 96, 112, 128], dtype=float)
METHODS = declared_methods({"lr": 3e-4, "methods": [
    "opd", "effopd",
    {"name": "opd-lr1e-4", "algorithm": "opd", "lr": 1e-4, "label": "OPD lr 1e-4"},
    {"name": "effopd-lr1e-4", "algorithm": "effopd", "lr": 1e-4, "label": "EffOPD lr 1e-4"},
    "rl"]})


def saturating(t):
    return 0.26 + 0.2 * (1 - np.exp(-np.asarray(t, dtype=float) / 40))


def run(method, seed, speed, problems=8):
    """Every problem's rate follows saturating(speed x step), plus a per-problem offset
    (problems differ, seeds do not)."""
    offsets = np.linspace(-0.1, 0.1, problems)
    rates = np.clip(saturating(speed * GRID)[:, None] + offsets[None, :], 0, 1)
    return Run(method, seed, GRID, rates, np.arange(0, 129, dtype=float), {})


def log(lr, warm=0):
    steps = np.arange(1, 129)
    return pd.DataFrame({"step": steps, "lr": lr * np.minimum(1, steps / max(warm, 1))})


def planted(seeds=(0, 1, 2)):
    """OPD at 1e-4 is the base curve; OPD at 3e-4 runs it 2x as fast (the best lr);
    EffOPD at 1e-4 runs it 1.5x as fast, EffOPD at 3e-4 as fast as OPD at 3e-4."""
    speeds = {"opd-lr1e-4": 1.0, "opd": 2.0, "effopd-lr1e-4": 1.5, "effopd": 2.0}
    lrs = {"opd-lr1e-4": 1e-4, "opd": 3e-4, "effopd-lr1e-4": 1e-4, "effopd": 3e-4}
    runs = [run(m, s, v) for m, v in speeds.items() for s in seeds]
    logs = {(m, s): log(lrs[m], warm=4 if m == "opd" else 0) for m in speeds for s in seeds}
    search = pd.DataFrame({"seed": [0, 0, 0, 1, 1, 2], "step": [1, 1, 2, 1, 1, 1],
                           "multiplier": [1.0, 3.0, 1.0, 1.0, 3.0, 1.0],
                           "accepted": [True, True, True, True, False, True]})
    return runs, logs, {"effopd-lr1e-4": search}


def test_cells_take_their_lr_from_the_logs_and_leave_other_algorithms_out():
    runs, logs, _ = planted()
    assert cells(runs, logs, METHODS) == {"opd": ("opd", 3e-4), "effopd": ("effopd", 3e-4),
                                          "opd-lr1e-4": ("opd", 1e-4),
                                          "effopd-lr1e-4": ("effopd", 1e-4)}
    bad = {**logs, ("opd", 1): log(2e-4)}
    with pytest.raises(ValueError, match="opd logged different peak learning rates"):
        cells(runs, bad, METHODS)


def test_searches_count_once_per_seed_and_step_and_accept_only_a_longer_step():
    _, _, searches = planted()
    # (0, 1) accepted 3x; (0, 2) and (2, 1) kept the plain step; (1, 1) rejected 3x
    assert search_counts(searches["effopd-lr1e-4"]) == (4, 1)
    assert search_counts(None) == (0, 0)


def test_the_map_recovers_the_planted_speed_ups():
    runs, logs, searches = planted()
    table = stepsize_map(runs, logs, searches, METHODS, {"bootstrap": 100})
    assert list(table.columns) == COLUMNS
    assert list(zip(table["algorithm"], table["lr"], strict=True)) == [
        ("opd", 1e-4), ("opd", 3e-4), ("effopd", 1e-4), ("effopd", 3e-4)]
    rows = table.set_index("method")
    assert rows.loc["opd", "best_lr"] and not rows.loc["opd-lr1e-4", "best_lr"]
    # EffOPD at 1e-4: 1.5x OPD at the same lr; OPD at its best lr (3e-4) is 2x: 0.75
    assert rows.loc["effopd-lr1e-4", "reference"] == "opd-lr1e-4"
    assert rows.loc["effopd-lr1e-4", "timescale_steps"] == pytest.approx(1.5, rel=1e-2)
    assert rows.loc["effopd-lr1e-4", "vs_best_lr_steps"] == pytest.approx(0.75, rel=1e-2)
    assert rows.loc["effopd", "timescale_steps"] == pytest.approx(1.0, abs=1e-3)
    assert rows.loc["effopd", "vs_best_lr_method"] == "opd"
    # identical seeds: the intervals collapse onto the estimates
    assert rows.loc["effopd", "timescale_steps_low"] == pytest.approx(
        rows.loc["effopd", "timescale_steps_high"])
    # final accuracy: the planted curve at step 128, offsets averaging to 0
    assert rows.loc["opd-lr1e-4", "final_acc"] == pytest.approx(float(saturating(128)))
    assert rows.loc["opd", "final_acc"] == pytest.approx(float(saturating(256)))
    assert (rows.loc["effopd-lr1e-4", "searches"], rows.loc["effopd-lr1e-4", "accepted"]) == \
        (4, 1)
    assert pd.isna(rows.loc["opd", "timescale_steps"])  # OPD rows: no speed-up
    markdown = stepsize_markdown(table)
    assert list(markdown["method"]) == ["OPD lr 1e-4", "OPD", "EffOPD lr 1e-4", "EffOPD"]
    assert "(best OPD lr)" in markdown.loc[1, "final acc [95% CI]"]


def test_the_smoke_dag_draws_the_map(smoke_run):
    """OPD at lr and at 2x lr (its learning-rate baseline) and EffOPD: a map of 3 cells."""
    table = pd.read_csv(smoke_run / "results/smoke/tables/stepsize_map.csv")
    assert list(table.columns) == COLUMNS
    assert list(table["method"]) == ["opd", "opd-lr2x", "effopd"]
    assert table["lr"].tolist() == pytest.approx([1e-3, 2e-3, 1e-3])
    assert (smoke_run / "paper_figures/smoke/stepsize_map.png").stat().st_size > 10_000

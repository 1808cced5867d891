"""Tables of the training runs: curves, EffOPD's speed-up, and compute per method.

Speed-up (our definition, SPEC section 1 claim 5): for each seed, let ``a*``
be plain OPD's accuracy at its last step. EffOPD's time-to-target is the first
evaluated checkpoint whose accuracy is >= ``a*`` (steps and training wall
time, line-search cost included). Speed-up in steps = OPD's last step / that
step; in wall time = OPD's wall time at its last step / EffOPD's wall time at
that step. Resolution is that of the checkpoint grid. A seed whose EffOPD run
never reaches ``a*`` has no speed-up (NaN) and counts as not reached.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from effopd.reports.runs import run_of
from effopd.reports.stats import mean_ci95

CURVE_COLUMNS = ["method", "seed", "step", "train_wall_s", "benchmark", "avg@n"]


def load_curves(eval_csvs: list[str | Path], log_csvs: list[str | Path]) -> pd.DataFrame:
    """One row per (method, seed, step): checkpoint accuracy joined with the training log.

    Method and seed are read from each path (``.../<method>/seed<seed>/...``).
    """
    frames = []
    for eval_csv, log_csv in zip(eval_csvs, log_csvs, strict=True):
        method, seed = run_of(Path(eval_csv).parent)
        scores = pd.read_csv(eval_csv).rename(columns={"seed": "sampling_seed"})
        train_log = pd.read_csv(log_csv)
        merged = scores.merge(train_log[["step", "batch_accuracy", "reverse_kl", "loss"]],
                              on="step", how="left")
        merged.insert(0, "seed", seed)
        merged.insert(0, "method", method)
        frames.append(merged)
    curves = pd.concat(frames, ignore_index=True)
    pass_cols = [c for c in curves.columns if c.startswith("pass@")]
    keep = CURVE_COLUMNS + pass_cols + ["batch_accuracy", "reverse_kl", "loss"]
    return curves[keep].sort_values(["method", "seed", "step"]).reset_index(drop=True)


def first_reaching(curve: pd.DataFrame, target: float) -> pd.Series | None:
    """The first row (by step) whose accuracy is >= ``target``, or None."""
    reached = curve[curve["avg@n"] >= target - 1e-12].sort_values("step")
    return None if reached.empty else reached.iloc[0]


def speedup_table(curves: pd.DataFrame, benchmark: str) -> pd.DataFrame:
    """Per seed: OPD's final accuracy, EffOPD's time to reach it, speed-ups; then mean and CI."""
    curves = curves[curves["benchmark"] == benchmark]
    rows = []
    for seed in sorted(set(curves["seed"])):
        opd = curves[(curves["method"] == "opd") & (curves["seed"] == seed)].sort_values("step")
        eff = curves[(curves["method"] == "effopd") & (curves["seed"] == seed)]
        if opd.empty or eff.empty:
            continue
        opd_last = opd.iloc[-1]
        hit = first_reaching(eff, opd_last["avg@n"])
        eff_last = eff.sort_values("step").iloc[-1]
        rows.append({
            "seed": str(seed),
            "opd_final_accuracy": opd_last["avg@n"],
            "opd_steps": int(opd_last["step"]),
            "opd_wall_s": opd_last["train_wall_s"],
            "effopd_reached": hit is not None,
            "effopd_step_to_target": math.nan if hit is None else int(hit["step"]),
            "effopd_wall_s_to_target": math.nan if hit is None else hit["train_wall_s"],
            "speedup_steps": math.nan if hit is None or hit["step"] == 0
            else opd_last["step"] / hit["step"],
            "speedup_wall": math.nan if hit is None or hit["train_wall_s"] == 0
            else opd_last["train_wall_s"] / hit["train_wall_s"],
            "effopd_final_accuracy": eff_last["avg@n"],
            "final_accuracy_diff": eff_last["avg@n"] - opd_last["avg@n"],
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    summary = {"seed": "mean"}, {"seed": "ci95_low"}, {"seed": "ci95_high"}
    for column in table.columns:
        if column in ("seed", "effopd_reached"):
            continue
        mean, low, high = mean_ci95(table[column].astype(float))
        for row, value in zip(summary, (mean, low, high), strict=True):
            row[column] = value
    summary[0]["effopd_reached"] = f"{int(table['effopd_reached'].sum())}/{len(table)}"
    return pd.concat([table, pd.DataFrame(summary)], ignore_index=True)


def compute_table(log_csvs: list[str | Path]) -> pd.DataFrame:
    """Per method: prompts and responses per step, response tokens per step, wall time.

    States how compute-matched the methods are (SPEC: OPD 1 response per
    prompt; the RL baseline n responses for fewer prompts).
    """
    rows = []
    for log_csv in log_csvs:
        method, _ = run_of(Path(log_csv).parent)
        frame = pd.read_csv(log_csv)
        rows.append({"method": method, "steps": int(frame["step"].max()),
                     "prompts_per_step": frame["prompts"].mean(),
                     "responses_per_step": frame["responses"].mean(),
                     "response_tokens_per_step": frame["response_tokens"].mean(),
                     "search_s_total": frame["search_s"].sum(),
                     "wall_s_total": frame["wall_s"].max()})
    table = pd.DataFrame(rows)
    return table.groupby("method", sort=True).mean(numeric_only=True).reset_index()


def write_training_tables(eval_csvs: list[str | Path], log_csvs: list[str | Path],
                          benchmark: str, curves_csv: str | Path, speedup_csv: str | Path,
                          compute_csv: str | Path) -> None:
    """Write training_curves.csv, effopd_speedup.csv/.md and training_compute.csv/.md."""
    from effopd.io import atomic_path, write_table

    curves = load_curves(eval_csvs, log_csvs)
    with atomic_path(curves_csv) as tmp:
        curves.to_csv(tmp, index=False)
    write_table(speedup_table(curves, benchmark), speedup_csv)
    write_table(compute_table(log_csvs), compute_csv)

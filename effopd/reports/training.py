"""Tables of the training runs: curves, EffOPD's speed-up, and compute per method.

The speed-up is defined once, in :mod:`effopd.reports.speedup` (common checkpoint
grid, isotonic curves, OPD's plateau as the target, censoring, the OPD-vs-OPD null
control, three cost units, a bootstrap over seeds and problems); this module
loads the runs and writes the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.config import block_defaults
from effopd.methods import Method, algorithm_of
from effopd.metrics import problems_csv
from effopd.reports.runs import paired_runs
from effopd.reports.speedup import (
    cumulative_costs,
    estimate_settings,
    load_runs,
    problem_rates,
    speedup_markdown,
    speedup_table,
)
from effopd.reports.stats import problem_mean_se
from effopd.tables import BASE_MODELS, TRAIN_LOG, read_table, runs_by_key


def base_accuracy(base_models_csv: str | Path, model: str, benchmark: str | None) -> float:
    """A base model's avg@n on ``benchmark`` from base_models.csv (the teacher's is the
    reference the training curves and the claims' row 0a are read against)."""
    table = read_table(base_models_csv, BASE_MODELS)
    rows = table[(table["model"] == model) & (table["benchmark"] == benchmark)]
    if len(rows) != 1:
        raise ValueError(f"{base_models_csv}: expected one row for model {model!r} on "
                         f"benchmark {benchmark!r}, found {len(rows)}")
    return float(rows["avg@n"].iloc[0])


def teacher_accuracy(base_models_csv: str | Path | None, benchmark: str | None
                     ) -> float | None:
    """The teacher's :func:`base_accuracy` on ``benchmark``; None without a table."""
    return None if base_models_csv is None else base_accuracy(base_models_csv, "teacher",
                                                              benchmark)


CURVE_COLUMNS = ["method", "seed", "step", "train_wall_s", "benchmark", "avg@n", "accuracy_se"]


def load_curves(eval_csvs: list[str | Path], log_csvs: list[str | Path]) -> pd.DataFrame:
    """One row per (method, seed, step): checkpoint accuracy joined with the training log.

    Evaluation series and logs are joined on the run's identity, their method and seed
    columns (:func:`effopd.reports.runs.paired_runs`).
    """
    frames = []
    for run in paired_runs(eval_csvs, log_csvs):
        scores, train_log, eval_csv = run.scores, run.log, run.eval_csv
        costs = cumulative_costs(train_log)
        merged = scores.merge(train_log[["step", "batch_accuracy", "reverse_kl", "loss"]]
                              .merge(costs, on="step"), on="step", how="left")
        merged.loc[merged["step"] == 0, list(costs.columns.drop("step"))] = 0.0
        if Path(problems_csv(eval_csv)).exists():
            steps, rates = problem_rates(eval_csv, scores["step"].tolist())
            se = pd.DataFrame({"step": steps,
                               "accuracy_se": [problem_mean_se(r) for r in rates]})
            merged = merged.merge(se, on="step", how="left")
        else:
            merged["accuracy_se"] = float("nan")
        frames.append(merged)
    curves = pd.concat(frames, ignore_index=True)
    pass_cols = [c for c in curves.columns if c.startswith("pass@")]
    keep = CURVE_COLUMNS + pass_cols + ["generated_tokens", "cpu_s", "batch_accuracy",
                                        "reverse_kl", "loss"]
    return curves[keep].sort_values(["method", "seed", "step"]).reset_index(drop=True)


def compute_table(log_csvs: list[str | Path], methods: Mapping[str, Method] | None = None
                  ) -> pd.DataFrame:
    """Per method (mean over seeds): what one run spent, in the speed-up's three units.

    Columns: steps; prompts and responses per step; training response tokens
    (also the tokens the teacher scores, for OPD and EffOPD); EffOPD's validation
    rollouts (responses and tokens, in total); generated tokens in total (training
    plus validation); CPU seconds (process and grading workers: compute that does
    not depend on what else shares the cores); wall seconds and line-search
    seconds (these do). States how compute-matched the methods are (SPEC: OPD one
    response per prompt; the RL baseline n responses for fewer prompts).
    """
    rows = []
    for (method, _), (_, frame) in runs_by_key(log_csvs, TRAIN_LOG).items():
        val_tokens = frame["val_tokens"].sum() if "val_tokens" in frame else float("nan")
        rows.append({"method": method, "steps": int(frame["step"].max()),
                     "prompts_per_step": frame["prompts"].mean(),
                     "responses_per_step": frame["responses"].mean(),
                     "response_tokens_per_step": frame["response_tokens"].mean(),
                     "train_tokens_total": frame["response_tokens"].sum(),
                     "teacher_scored_tokens_total": frame["response_tokens"].sum()
                     if getattr(algorithm_of(method, methods), "teacher", True) else 0,
                     "val_responses_total": frame["val_responses"].sum()
                     if "val_responses" in frame else float("nan"),
                     "val_tokens_total": val_tokens,
                     "generated_tokens_total": frame["response_tokens"].sum() + val_tokens,
                     "cpu_s_total": frame["cpu_s"].max() if "cpu_s" in frame
                     else float("nan"),
                     "search_s_total": frame["search_s"].sum(),
                     "wall_s_total": frame["wall_s"].max()})
    table = pd.DataFrame(rows)
    return table.groupby("method", sort=True).mean(numeric_only=True).reset_index()


def write_training_tables(eval_csvs: list[str | Path], log_csvs: list[str | Path],
                          benchmark: str, curves_csv: str | Path, speedup_csv: str | Path,
                          compute_csv: str | Path, speedup: dict[str, Any] | None = None,
                          methods: Mapping[str, Method] | None = None) -> None:
    """Write training_curves.csv, effopd_speedup.csv/.md and training_compute.csv/.md.

    ``speedup``: the config's ``speedup`` block (plateau_fraction, target_fraction,
    bootstrap, bootstrap_seed, confidence, non_inferiority_margin); the speed-up uses the
    runs of ``benchmark`` only. ``methods``: the declared methods (the learning-rate
    baselines the speed-up compares, the labels).
    """
    from effopd.io import atomic_path, atomic_write_text, markdown_table, write_table

    curves = load_curves(eval_csvs, log_csvs)
    with atomic_path(curves_csv) as tmp:
        curves.to_csv(tmp, index=False)
    settings = block_defaults("speedup", speedup)
    runs = load_runs(eval_csvs, log_csvs, benchmark)
    table = speedup_table(
        runs, non_inferiority_margin=settings["non_inferiority_margin"],
        **estimate_settings(settings), methods=methods)
    with atomic_path(speedup_csv) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(Path(speedup_csv).with_suffix(".md"),
                      markdown_table(speedup_markdown(table, methods)) + "\n")
    write_table(compute_table(log_csvs, methods), compute_csv)

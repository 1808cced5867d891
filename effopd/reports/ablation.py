"""EffOPD's step-size ablation: the speed-up over OPD as each search knob changes.

Every variant is EffOPD with some ``training.effopd`` keys replaced (the size of the
validation set, ``max_iterations``, ``initial_factor``, the search schedule: powers of
two against every k steps), trained as method ``effopd-<name>`` on the same seeds as
OPD. Each variant, and the authors' setting (method ``effopd``), is compared with OPD
by the one speed-up estimator (:func:`effopd.reports.speedup.estimate`: pairs of the
same seed, leave-pair-out target, two-level bootstrap over problems and pairs), in
optimizer steps, generated tokens and CPU seconds, with the final-accuracy
difference and its non-inferiority verdict. One row per variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.config import block_defaults
from effopd.methods import EFFOPD, OPD, variant_name
from effopd.reports.speedup import (
    UNITS,
    Run,
    estimate,
    estimate_settings,
    format_number,
    interval_text,
    load_runs,
)

KNOBS = ("validation_size", "max_iterations", "initial_factor", "schedule", "search_every")


def variant_settings(effopd: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The search knobs of a variant: the config's ``training.effopd`` with its overrides;
    ``search_every`` only where the schedule is ``every_k``."""
    merged = {**effopd, **overrides}
    settings = {k: merged.get(k) for k in KNOBS}
    if settings["schedule"] != "every_k":
        settings["search_every"] = None
    return settings


def ablation_table(runs: Sequence[Run], effopd: dict[str, Any],
                   variants: dict[str, dict[str, Any]], speedup: dict[str, Any] | None = None
                   ) -> pd.DataFrame:
    """One row per variant (the authors' setting first): its knobs, the pairs compared,
    the speed-up in each unit with its interval and censoring, and the final-accuracy
    difference (variant - OPD) with its interval and ``non_inferior``."""
    settings = block_defaults("speedup", speedup)
    by = {(r.method, r.seed): r for r in runs}
    rows = []
    for name, overrides in [("authors", {}), *variants.items()]:
        method = EFFOPD if name == "authors" else variant_name(name)
        pairs = [(by[(OPD, s)], by[(m, s)]) for (m, s) in sorted(by)
                 if m == method and (OPD, s) in by]
        if not pairs:
            raise ValueError(f"ablation: no run of {method} with an OPD run of the same seed")
        result = estimate(pairs, **estimate_settings(settings))
        summary = result.summary
        margin = settings["non_inferiority_margin"]
        row = {"variant": name, "method": method,
               **variant_settings(effopd, overrides),
               "seeds": " ".join(str(trt.seed) for _, trt in pairs),
               "n_pairs": summary["n_pairs"], "reached": summary["reached"]}
        for unit in UNITS:
            column = f"speedup_{unit}"
            row.update({column: summary[column],
                        f"{column}_censored": summary[f"{column}_censored"],
                        f"{column}_ci95_low": summary[f"{column}_ci95_low"],
                        f"{column}_ci95_high": summary[f"{column}_ci95_high"]})
        row.update({"final_accuracy_diff": summary["final_accuracy_diff"],
                    "final_accuracy_diff_ci95_low": summary["final_accuracy_diff_ci95_low"],
                    "final_accuracy_diff_ci95_high": summary["final_accuracy_diff_ci95_high"],
                    "non_inferior": bool(summary["final_accuracy_diff_ci95_low"] > -margin)})
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_markdown(table: pd.DataFrame) -> pd.DataFrame:
    """The Markdown view: knobs, then each estimate with its interval inline."""
    number, estimate_text = format_number, interval_text
    lines = []
    for _, row in table.iterrows():
        lines.append({
            "variant": row["variant"],
            "validation problems": number(row["validation_size"]) or "all",
            "max iterations": number(row["max_iterations"]),
            "initial factor": number(row["initial_factor"]),
            "schedule": row["schedule"] if row["schedule"] != "every_k"
            else f"every {int(row['search_every'])} steps",
            "pairs": int(row["n_pairs"]), "reached": row["reached"],
            "speed-up, steps": estimate_text(row, "speedup_steps"),
            "speed-up, tokens": estimate_text(row, "speedup_tokens"),
            "speed-up, CPU s": estimate_text(row, "speedup_cpu_s"),
            "final acc diff": estimate_text(row, "final_accuracy_diff"),
            "non-inferior": "yes" if row["non_inferior"] else "not shown",
        })
    return pd.DataFrame(lines)


def write_ablation_table(eval_csvs: Sequence[str | Path], log_csvs: Sequence[str | Path],
                         effopd: dict[str, Any], variants: dict[str, dict[str, Any]],
                         out_csv: str | Path, speedup: dict[str, Any] | None = None
                         ) -> pd.DataFrame:
    """Write effopd_ablation.csv and .md from the runs' per-problem scores and logs."""
    from effopd.io import atomic_path, atomic_write_text, markdown_table

    runs = load_runs(eval_csvs, log_csvs)
    table = ablation_table(runs, effopd, variants, speedup)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(Path(out_csv).with_suffix(".md"),
                      markdown_table(ablation_markdown(table)) + "\n")
    return table

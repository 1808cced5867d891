"""The line scan's table: every scanned run's rows in one table, and where the best
multiplier lies (the scan itself: :mod:`effopd.training.line_scan`).

- **Table** ``line_scan.csv``: the per-run scans concatenated (method, seed, lr, step,
  anchor_step, multiplier, val_acc, reverse_kl), by decreasing learning rate, then step
  and multiplier (:func:`line_scan_table`).
- **Best multiplier** per (run, step) (:func:`best_multipliers`): the m with the highest
  validation accuracy (ties: the one nearest 1, the plain step, as EffOPD's strict
  improvement keeps it) and the m with the lowest batch reverse KL. EffOPD accepts its
  first candidate (m = 3) only where the accuracy at 3 beats the accuracy at 1.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from effopd.io import atomic_path, atomic_write_text, markdown_table
from effopd.reports.speedup import format_lr
from effopd.tables import TableSchema, read_table

SCAN = TableSchema({"method": "text", "seed": "count", "lr": "number", "step": "step",
                    "anchor_step": "step", "multiplier": "number", "val_acc": "fraction",
                    "reverse_kl": "number"},
                   ("method", "seed", "lr", "step", "multiplier", "val_acc", "reverse_kl"),
                   key=("step", "multiplier"), per_run=True)


def line_scan_table(scans: list[pd.DataFrame]) -> pd.DataFrame:
    """The runs' scans in one table, by decreasing lr, then step and multiplier."""
    table = pd.concat(scans, ignore_index=True)
    return table.sort_values(["lr", "step", "multiplier"], ascending=[False, True, True],
                             kind="stable").reset_index(drop=True)


def best_multipliers(table: pd.DataFrame) -> pd.DataFrame:
    """Per (method, seed, lr, step): the multiplier of the highest ``val_acc`` (ties: the
    nearest to 1) and of the lowest ``reverse_kl``, with both values at m = 1 and m = 3."""
    rows = []
    for (method, seed, lr, step), scan in table.groupby(["method", "seed", "lr", "step"],
                                                        sort=False):
        nearest = scan.assign(distance=(scan["multiplier"] - 1).abs())
        best_acc = nearest.sort_values(["val_acc", "distance"], ascending=[False, True]).iloc[0]
        best_kl = scan.loc[scan["reverse_kl"].idxmin()]
        at = scan.set_index("multiplier")
        rows.append({"method": method, "seed": seed, "lr": lr, "step": step,
                     "best_m_val_acc": best_acc["multiplier"],
                     "best_m_reverse_kl": best_kl["multiplier"],
                     "val_acc_m1": at["val_acc"].get(1.0), "val_acc_m3": at["val_acc"].get(3.0),
                     "reverse_kl_m1": at["reverse_kl"].get(1.0),
                     "reverse_kl_m3": at["reverse_kl"].get(3.0)})
    return pd.DataFrame(rows)


def write_line_scan(scan_csvs: list[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """Write line_scan.csv and, beside it, line_scan.md (:func:`best_multipliers`)."""
    table = line_scan_table([read_table(path, SCAN) for path in scan_csvs])
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    best = best_multipliers(table)
    view = best.assign(lr=best["lr"].map(format_lr))
    atomic_write_text(Path(out_csv).with_suffix(".md"), markdown_table(view) + "\n")
    return table

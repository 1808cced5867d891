"""One-off migration: give results written before runs carried their identity the columns
their producers now write (``effopd.tables.RUN_KEY``).

Until December 2026 a run's files named their run only through their path
(``.../<method>/seed<seed>/...``) and the evaluation series called its sampling seed
``seed``. This script rewrites, under each ``RESULTS`` directory given:

- ``train/<method>/seed<seed>/{log,effopd_search,checkpoints}.csv``,
- ``eval/runs/<method>/seed<seed>/<benchmark>.csv`` (its ``seed`` renamed
  ``sampling_seed`` in place; the ``.problems.csv`` beside it is left as it is),
- ``analysis/<method>/seed<seed>/*.csv``,

with ``method`` and ``seed`` (the training seed) as their first two columns. The identity
is read from the path once and checked against what the file itself says about its run
(a checkpoint path ``.../runs/<method>/seed<seed>/...`` in the index, the model label
``<method>/seed<seed>/step_<k>`` in the evaluation series); a disagreement stops the
script before anything is written. Every other cell is kept as text (no pandas round
trip) and written back by Python's csv writer with minimal quoting and the file's own
line ending, as every producer wrote it: all 632 committed files came back byte for
byte but for the new columns. Files that already have the columns are left alone, so
the script can be run again.

    python tools/migrate_run_identity.py results/tiny results/study ...
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from pathlib import Path

RUN_DIR = re.compile(r"^seed(\d+)$")
PER_RUN = ("train", "eval/runs", "analysis")


def run_files(results: Path) -> list[tuple[Path, str, int]]:
    """(file, method, seed) of every per-run CSV under ``results`` (identity from its path)."""
    found = []
    for kind in PER_RUN:
        for seed_dir in sorted((results / kind).glob("*/seed*")):
            match = RUN_DIR.match(seed_dir.name)
            if not match or not seed_dir.is_dir():
                continue
            for path in sorted(seed_dir.glob("*.csv")):
                if not path.name.endswith(".problems.csv"):
                    found.append((path, seed_dir.parent.name, int(match.group(1))))
    return found


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def check_identity(path: Path, header: list[str], rows: list[list[str]], method: str,
                   seed: int) -> None:
    """Refuse a file whose contents name another run than its path."""
    run = f"{method}/seed{seed}/"
    columns = {name: i for i, name in enumerate(header)}
    if path.name == "checkpoints.csv" and "path" in columns:
        for row in rows:
            if f"/runs/{run}" not in row[columns["path"]].replace("\\", "/") + "/":
                raise SystemExit(f"{path}: checkpoint {row[columns['path']]} is not under "
                                 f"runs/{run}")
    if "model" in columns and "train_wall_s" in columns:
        for row in rows:
            if not row[columns["model"]].startswith(run):
                raise SystemExit(f"{path}: model {row[columns['model']]} is not {run}...")


def migrate_text(text: str, method: str, seed: int, path: Path) -> str | None:
    """The file's text with the identity columns first; None when it has them already."""
    newline = "\r\n" if "\r\n" in text else "\n"
    rows = _rows(text)
    header, body = rows[0], [row for row in rows[1:] if row]
    if header[:2] == ["method", "seed"]:
        return None
    check_identity(path, header, body, method, seed)
    if "train_wall_s" in header:  # an evaluation series: its seed is the sampling seed
        header = ["sampling_seed" if name == "seed" else name for name in header]
    if "seed" in header or "method" in header:
        raise SystemExit(f"{path}: already has a method or seed column: {header}")
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(["method", "seed", *header])
    writer.writerows([method, str(seed), *row] for row in body)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results directories")
    args = parser.parse_args(argv)
    plans = []
    for results in args.results:
        for path, method, seed in run_files(results):
            migrated = migrate_text(path.read_bytes().decode(), method, seed, path)
            if migrated is not None:
                plans.append((path, migrated))
    for path, migrated in plans:  # every file checked before any is written
        tmp = path.with_name(f".{path.name}.migrating")
        tmp.write_bytes(migrated.encode())
        tmp.replace(path)
    print(f"{len(plans)} file(s) migrated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

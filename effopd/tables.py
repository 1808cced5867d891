"""Validated reading of the suite's CSV files (ground floor): every committed or
intermediate table a report, plot or analysis reads passes through :func:`read_table`.

A table that is missing, empty, binary, not CSV, has a row with more or fewer fields
than its header (a truncated row), lacks a column, holds text where a number belongs,
a blank where a value belongs, an impossible value (an accuracy above 1, a negative
count) or two rows with the same key (a duplicated row) is refused with an
:class:`~effopd.errors.InputError` of one line naming the file and the row (its line
number in the file, the header being line 1). A valid table is returned exactly as
``pandas.read_csv`` reads it, so the numbers drawn from it do not change.

Each file kind of ``results/`` has a :class:`TableSchema` below: the columns its
readers use, their kinds and the key that identifies a row.

A file of one training run carries the run's identity in its own columns,
:data:`RUN_KEY` (``method``, ``seed``: the training seed), written by its producer
(the engines, ``evaluate-series``, ``analyze``, ``evaluate-interventions``). Readers
join files on that key (:func:`run_identity`, :func:`runs_by_key`); nobody parses it
back out of a path or pairs files by their position in a list. A sampling seed is
named ``sampling_seed``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.errors import InputError

# A column's kind: what each of its cells must be.
KINDS = {
    "text": "text",
    "number": "a finite number",
    "count": "a whole number >= 0",
    "step": "a whole number >= 0",
    "fraction": "a number in [0, 1]",
    "nonnegative": "a number >= 0",
}

# Float rounding of a computed fraction (a subspace overlap of 1 + 4e-15).
FRACTION_SLACK = 1e-9


@dataclass(frozen=True)
class TableSchema:
    """The kinds of a table's columns (name -> kind of :data:`KINDS`, checked where the
    column is present), the columns its readers need (``required``), the columns that may
    be blank, kinds of the columns whose names start with a prefix (``pass@``), and the
    key columns no two rows may share (checked when the table has them all)."""

    columns: dict[str, str]
    required: tuple[str, ...]
    key: tuple[str, ...] = ()
    blank_ok: tuple[str, ...] = ()
    prefixes: dict[str, str] = field(default_factory=dict)
    other_columns: str | None = None  # kind of every column not named (wide tables)
    per_run: bool = False  # one training run's file: RUN_KEY columns, one value each

    def kind_of(self, column: str) -> str | None:
        if column in self.columns:
            return self.columns[column]
        for prefix, kind in self.prefixes.items():
            if column.startswith(prefix):
                return kind
        return self.other_columns


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise InputError(f"{path}: missing (a table this step reads)") from err
    except OSError as err:
        raise InputError(f"{path}: cannot read: {err.strerror or err}") from err
    if not data.strip():
        raise InputError(f"{path}: empty file, expected a CSV table with a header")
    if b"\x00" in data:
        raise InputError(f"{path}: a binary file, expected a CSV table")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}), "
                         "expected a CSV table") from err


def _check_field_counts(path: Path, text: str) -> None:
    rows = csv.reader(io.StringIO(text))
    header = next(rows)
    for line, row in enumerate(rows, start=2):
        if row and len(row) != len(header):
            raise InputError(f"{path}: row {line} has {len(row)} fields, the header "
                             f"{len(header)} (a truncated or merged row)")


def _bad_cell(kind: str, value: object) -> bool:
    """Whether a non-blank cell ``value`` is not of ``kind``."""
    if kind == "text":
        return False
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    if not math.isfinite(number):
        return True
    if kind in ("count", "step"):
        return number < 0 or number != int(number)
    if kind == "fraction":
        return not -FRACTION_SLACK <= number <= 1 + FRACTION_SLACK
    if kind == "nonnegative":
        return number < 0
    return False


def validate_table(table: pd.DataFrame, schema: TableSchema, path: str | os.PathLike[str]
                   ) -> pd.DataFrame:
    """Check ``table`` (read from ``path``) against ``schema``; return it unchanged."""
    required = (*RUN_KEY, *schema.required) if schema.per_run else schema.required
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in table.columns:
        kind = schema.kind_of(str(column))
        if kind is None:
            continue
        values = table[column]
        for index, value in values.items():
            line = int(index) + 2  # type: ignore[call-overload]
            if pd.isna(value):
                if column not in schema.blank_ok:
                    raise InputError(f"{path}: row {line}: column '{column}' is blank, "
                                     f"expected {KINDS[kind]} (a truncated row?)")
            elif _bad_cell(kind, value):
                raise InputError(f"{path}: row {line}: column '{column}' is {value!r}, "
                                 f"expected {KINDS[kind]}")
    seen: dict[tuple, int] = {}
    keyed = schema.key and set(schema.key) <= set(table.columns)
    for index, *values in table[list(schema.key)].itertuples() if keyed else ():
        key = tuple("" if pd.isna(v) else v for v in values)
        if key in seen:
            shown = ", ".join(f"{k}={v}" for k, v in zip(schema.key, key, strict=True))
            raise InputError(f"{path}: rows {seen[key]} and {int(index) + 2} share the key "
                             f"({shown}): a duplicated row")
        seen[key] = int(index) + 2
    if schema.per_run:
        for column in RUN_KEY:
            values = table[column].unique()
            if len(values) > 1:
                raise InputError(f"{path}: column '{column}' holds {len(values)} values "
                                 f"({', '.join(map(str, values[:3]))}); a run's file has one")
    return table


def read_table(path: str | os.PathLike[str], schema: TableSchema | None = None
               ) -> pd.DataFrame:
    """``pandas.read_csv(path)``, refused in one line naming ``path`` and the row unless
    the file is a well-formed CSV table with at least one row that satisfies ``schema``
    (no schema: the form only)."""
    path = Path(path)
    text = _read_text(path)
    try:
        _check_field_counts(path, text)
        table = pd.read_csv(path)
    except (csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path}: not a valid CSV table: {' '.join(str(err).split())}"
                         ) from err
    if table.empty:
        raise InputError(f"{path}: a header and no rows")
    return table if schema is None else validate_table(table, schema, path)


# --------------------------------------------------------------------------- a run's identity

#: The columns that name the training run a row belongs to: the method (a DAG method
#: such as ``opd``, ``rl``, ``effopd``, ``opd-lr2x``) and the training seed.
RUN_KEY = ("method", "seed")
_RUN_COLUMNS = {"method": "text", "seed": "count"}


def with_run(table: pd.DataFrame, run: Mapping[str, Any]) -> pd.DataFrame:
    """``table`` with the run's identity (``run``: method, seed) as its first columns;
    unchanged when ``run`` is empty (a series given without an identity)."""
    if not run:
        return table
    table = table.drop(columns=[c for c in RUN_KEY if c in table.columns])
    for column in reversed(RUN_KEY):
        table.insert(0, column, run[column])
    return table


def run_identity(table: pd.DataFrame, path: str | os.PathLike[str]) -> tuple[str, int]:
    """(method, seed) of a per-run table read with its schema (one value of each)."""
    missing = [c for c in RUN_KEY if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}: the run's identity")
    return str(table["method"].iloc[0]), int(table["seed"].iloc[0])


def runs_by_key(paths: Iterable[str | os.PathLike[str]], schema: TableSchema
                ) -> dict[tuple[str, int], tuple[Path, pd.DataFrame]]:
    """Read per-run files: (method, seed) -> (path, table); two files of one run are refused,
    naming both."""
    runs: dict[tuple[str, int], tuple[Path, pd.DataFrame]] = {}
    for path in map(Path, paths):
        table = read_table(path, schema)
        key = run_identity(table, path)
        if key in runs:
            raise InputError(f"{path}: run method={key[0]} seed={key[1]} again (also in "
                             f"{runs[key][0]}); each run's file is given once")
        runs[key] = (path, table)
    return runs


def join_runs(left: Mapping[tuple[str, int], tuple[Path, pd.DataFrame]],
              right: Mapping[tuple[str, int], tuple[Path, pd.DataFrame]],
              left_name: str, right_name: str) -> list[tuple[str, int]]:
    """The runs two sets of per-run files (:func:`runs_by_key`) share, in ``left``'s order;
    refused unless both hold the same runs, naming a file whose run the other side lacks:
    the join every reader of two kinds of a run's files makes."""
    for name, these, others, other_name in ((left_name, left, right, right_name),
                                            (right_name, right, left, left_name)):
        lacking = [key for key in these if key not in others]
        if lacking:
            method, seed = lacking[0]
            raise InputError(f"{these[lacking[0]][0]}: run method={method} seed={seed} has "
                             f"no file among {other_name} ({len(lacking)} of {name} lack "
                             "their partner)")
    return list(left)


# --------------------------------------------------------------------------- the suite's files

_SAMPLING = {"benchmark": "text", "n_problems": "count", "avg@n": "fraction", "n": "count"}

#: ``effopd evaluate-series``: one row per checkpoint step (results/.../eval/runs/...csv).
EVAL_SERIES = TableSchema({**_RUN_COLUMNS, "step": "step", **_SAMPLING,
                           "sampling_seed": "count"}, ("step", "avg@n", "benchmark"),
                          key=("step",), prefixes={"pass@": "fraction"}, per_run=True)
#: its per-problem counts (``.problems.csv``): correct samples of each problem per step.
PROBLEMS = TableSchema({"step": "step", "n": "count"}, ("step", "n"), key=("step",),
                       other_columns="count")
#: a training run's log.csv: one row per optimizer step. ``cpu_s`` may be blank: engine
#: verl does not measure CPU time (the speed-up then has no CPU-seconds unit).
TRAIN_LOG = TableSchema({**_RUN_COLUMNS, "step": "step", "response_tokens": "count",
                         "prompts": "count", "responses": "count", "search_s": "nonnegative"},
                        ("step", "response_tokens"), key=("step",), blank_ok=("cpu_s",),
                        prefixes={"val_": "count", "cpu_s": "nonnegative"}, per_run=True)
#: a training run's checkpoints.csv: one row per saved checkpoint.
CHECKPOINT_INDEX = TableSchema({**_RUN_COLUMNS, "step": "step", "path": "text"},
                               ("step", "path"), key=("step",), per_run=True)
#: base_models.csv: one row per (model, benchmark).
BASE_MODELS = TableSchema({"model": "text", **_SAMPLING}, ("model", "benchmark", "avg@n"),
                          key=("model", "benchmark"), prefixes={"pass@": "fraction"})

_CHECKPOINT = {"checkpoint": "text", "step": "step", "fraction": "fraction"}
_SCORES = {"benchmark": "text", "avg@n": "fraction", "n_problems": "count"}
_MATRIX = {**_CHECKPOINT, "name": "text", "rows": "count", "cols": "count"}

_ANALYSIS_FILES = {
    "update_norms.csv": TableSchema({**_CHECKPOINT, "block_norm": "nonnegative",
                                     "total_norm": "nonnegative"}, ("step", "block_norm"),
                                    key=("step",)),
    "module_allocation.csv": TableSchema(
        {**_CHECKPOINT, "module": "text", "group": "text", "delta_norm": "nonnegative",
         "share": "fraction"}, ("step", "group", "delta_norm"),
        key=("step", "layer", "module"), blank_ok=("layer",)),
    "spectra.csv": TableSchema({**_MATRIX, "effective_rank": "nonnegative"},
                               ("step", "rows", "cols"), key=("step", "name"),
                               prefixes={"energy_share_k": "fraction"}),
    "alignment.csv": TableSchema(_MATRIX, ("step",), key=("step", "name"),
                                 prefixes={"left_overlap_k": "fraction",
                                           "right_overlap_k": "fraction"}),
    "embedding_cosine.csv": TableSchema({"token_id": "count", "cosine": "number"},
                                        ("cosine",), key=("token_id",)),
    "embedding_projection.csv": TableSchema({"token_id": "count", "source": "text",
                                             "x": "number", "y": "number"},
                                            ("source", "x", "y"), key=("token_id", "source")),
    "scaling.csv": TableSchema({**_CHECKPOINT, "kind": "text", "alpha": "number", **_SCORES},
                               ("kind", "alpha", "avg@n"), key=("kind", "alpha", "benchmark")),
    "modules.csv": TableSchema({**_CHECKPOINT, "intervention": "text", **_SCORES},
                               ("intervention", "avg@n"), key=("intervention",)),
    "rank_k.csv": TableSchema({**_CHECKPOINT, "variant": "text", **_SCORES},
                              ("variant", "avg@n"), key=("variant", "k"), blank_ok=("k",)),
}
#: the per-run files of ``effopd analyze`` and ``effopd evaluate-interventions``, each
#: with the run's identity (:data:`RUN_KEY`) first.
# The analyses' tables (results/<experiment>/tables/analysis/<name>.csv|.md, drawn by
# effopd.reports.analysis) and figures (paper_figures/<experiment>/<name>.png|.pdf, drawn by
# effopd.plots.analysis): named here once; the rule files read these lists.
ANALYSIS_TABLES = ("update_size_accuracy", "update_efficiency", "scaling_curves",
                   "early_recovery", "module_allocation_layers", "module_allocation_modules",
                   "module_utility", "update_spectra", "rank_k_accuracy", "subspace_alignment",
                   "top1_alignment", "embedding_shift", "embedding_projection")
ANALYSIS_FIGURES = ("update_size_accuracy", "scaling_curves", "module_allocation_layers",
                    "module_allocation_modules", "module_utility", "update_spectra",
                    "rank_k_accuracy", "subspace_alignment", "subspace_alignment_early",
                    "embedding_shift", "embedding_projection")
ANALYSIS_RUN_FILES = {name: replace(schema, columns={**_RUN_COLUMNS, **schema.columns},
                                    per_run=True)
                      for name, schema in _ANALYSIS_FILES.items()}

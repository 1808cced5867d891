"""Atomic file output and small readers shared by every stage.

Every output of the suite is written to a temporary file in the destination
directory and then renamed over the target (``os.replace`` is atomic on
POSIX), so an interrupted job never leaves a truncated file that Snakemake or
a later stage would mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line to ``path`` atomically; return the row count."""
    count = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, naming the file in the error if it is not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def iter_jsonl(path: str | os.PathLike[str], encoding_errors: str = "strict"
               ) -> Iterator[tuple[int, str, Any, json.JSONDecodeError | None]]:
    """``(line number, line, decoded value or None, decode error or None)`` for every
    non-blank line of a JSON-lines file; the caller decides what a bad line means."""
    with Path(path).open(encoding="utf-8", errors=encoding_errors) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, line, json.loads(line), None
            except json.JSONDecodeError as err:
                yield line_no, line, None, err


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a malformed line raises with the file and line number."""
    rows = []
    for line_no, _, row, error in iter_jsonl(path):
        if error is not None:
            raise ValueError(f"{path}:{line_no}: not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line_no}: expected a JSON object, "
                             f"got {type(row).__name__}")
        rows.append(row)
    return rows


def require_keys(rows: list[dict[str, Any]], keys: Iterable[str],
                 path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """``rows`` (of the JSON-lines file ``path``) unchanged, or an error naming the file,
    the row and the key the first row without one of ``keys`` lacks."""
    for number, row in enumerate(rows, start=1):
        missing = [key for key in keys if key not in row]
        if missing:
            raise InputError(f"{path}: row {number} has no key(s) {', '.join(missing)} "
                             f"(has: {', '.join(map(str, row)) or 'none'})")
    return rows


def apply_limit(rows: list[Any], limit: int | None, where: str) -> list[Any]:
    """The first ``limit`` rows; ``None`` keeps all. One meaning everywhere: ``limit``
    is a positive integer or ``None``; 0, negatives and non-integers are refused,
    naming ``where`` (the file or key the limit applies to)."""
    if limit is None:
        return rows
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{where}: limit must be a positive integer or null (all), "
                         f"got {limit!r}")
    return rows[:limit]


def write_rows(path: str | os.PathLike[str], columns: Sequence[str],
               rows: Iterable[dict[str, Any]]) -> Path:
    """Write dict rows as CSV with a header of ``columns`` (keys not among them are
    left out, missing ones left empty), atomically: the row writer of every engine."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def write_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write one table as CSV (no index), atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def write_table(table: pd.DataFrame, csv_path: str | os.PathLike[str],
                float_format: str = "%.4g") -> tuple[Path, Path]:
    """Write ``table`` as CSV and as a Markdown rendering beside it (same stem, ``.md``).

    Returns the two paths. Both are written atomically.
    """
    csv_target = write_csv(table, csv_path)
    md_target = csv_target.with_suffix(".md")
    atomic_write_text(md_target, markdown_table(table, float_format=float_format) + "\n")
    return csv_target, md_target


def markdown_table(table: pd.DataFrame, float_format: str = "%.4g") -> str:
    """Render ``table`` as a GitHub-flavoured Markdown table (no extra dependency)."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if value != value else float_format % value  # NaN -> empty
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])

"""Where a run's results live: ``.../<method>/seed<seed>/...``."""

from __future__ import annotations

from pathlib import Path


def run_of(path: str | Path) -> tuple[str, int]:
    """(method, seed) of a per-run directory ``.../<method>/seed<seed>``."""
    path = Path(path)
    return path.parent.name, int(path.name.removeprefix("seed"))

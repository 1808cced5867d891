"""Runs and their names: where a run's results live (``.../<method>/seed<seed>/...``) and
how tables and figures name a method."""

from __future__ import annotations

from pathlib import Path

METHOD_LABELS = {"opd": "OPD", "effopd": "EffOPD", "rl": "RL (GRPO)"}


def run_of(path: str | Path) -> tuple[str, int]:
    """(method, seed) of a per-run directory ``.../<method>/seed<seed>``."""
    path = Path(path)
    return path.parent.name, int(path.name.removeprefix("seed"))


def method_label(method: str) -> str:
    """A DAG method as tables and figures name it: OPD, EffOPD, RL (GRPO); a learning-rate
    baseline ``opd-lr<m>x`` as ``OPD lr x<m>``; any other name as it is."""
    if method.startswith("opd-lr") and method.endswith("x"):
        return f"OPD lr x{method[len('opd-lr'):-1]}"
    return METHOD_LABELS.get(method, method)

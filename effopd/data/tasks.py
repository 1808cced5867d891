"""The tiny task of a config (``task.kind``): arithmetic (:mod:`.arithmetic`) or code
(:mod:`.code_task`), written as the same three JSONL splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effopd.data import arithmetic, code_task

KINDS = ("arithmetic", "code")


def write_task_splits(block: dict[str, Any], out_dir: str | Path) -> dict[str, int]:
    """Write the ``task`` block's train/val/test splits to ``out_dir``; the row counts."""
    kind = block.get("kind", "arithmetic")
    if kind == "code":
        return code_task.write_splits(code_task.CodeTaskSpec.from_config(block), out_dir)
    if kind == "arithmetic":
        return arithmetic.write_splits(arithmetic.ArithmeticSpec.from_config(block), out_dir)
    raise ValueError(f"key 'task/kind': {kind!r} is not one of {list(KINDS)}")

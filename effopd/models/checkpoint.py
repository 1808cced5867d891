"""Saving Hugging Face checkpoints atomically, with a manifest of their files."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from effopd.io import atomic_write_json
from effopd.provenance import directory_manifest

MANIFEST_NAME = "manifest.json"


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path``.

    On an exception the temporary directory is deleted and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_manifest(directory: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json``: ``metadata`` plus the sha256 of every file in ``directory``."""
    manifest = {**metadata, "files": directory_manifest(directory)}
    atomic_write_json(Path(directory) / MANIFEST_NAME, manifest)
    return manifest


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    out_dir: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Save model (safetensors) and tokenizer to ``out_dir`` atomically, with a manifest."""
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        manifest = write_manifest(tmp, metadata)
    return manifest

"""Saving Hugging Face checkpoints atomically, with a manifest of their files."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from effopd.io import atomic_write_json
from effopd.provenance import directory_manifest

MANIFEST_NAME = "manifest.json"
TRAINING_STATE_NAME = "training_state.pt"


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
    manifest = {**metadata, "files": directory_manifest(
        directory, exclude=(MANIFEST_NAME, TRAINING_STATE_NAME))}
    atomic_write_json(Path(directory) / MANIFEST_NAME, manifest)
    return manifest


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    out_dir: str | Path, metadata: dict[str, Any],
                    training_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save model (safetensors) and tokenizer to ``out_dir`` atomically, with a manifest.

    ``training_state`` (optimizer moments etc.) goes to ``training_state.pt``
    beside the weights; it is resume state, not part of the model, and is left
    out of the manifest so that it can be deleted later.
    """
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE_NAME)
        manifest = write_manifest(tmp, metadata)
    return manifest

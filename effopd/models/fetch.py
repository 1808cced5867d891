"""Fetch a model: a Hub repository at a pinned revision, or a local directory.

Hub downloads go through ``huggingface_hub.snapshot_download`` into the normal
Hub cache (so ``HF_HUB_CACHE``/``HF_HOME`` and ``HF_HUB_OFFLINE`` behave as
users expect), then the snapshot's files are hard-linked (or copied, across
file systems) into the workflow's model directory with a manifest: repo id,
revision and the sha256 of every file.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from effopd.models.checkpoint import atomic_directory, write_manifest

log = logging.getLogger(__name__)

# Weights, configs and tokenizer files; skip other formats of the same weights.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken", "*.py"]


def _link_or_copy_tree(source: Path, target: Path) -> None:
    """Mirror the regular files below ``source`` into ``target`` (symlinks resolved)."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        real = path.resolve()
        try:
            os.link(real, destination)
        except OSError:
            shutil.copy2(real, destination)


def fetch_model(spec: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Materialise the model described by a ``models.<role>`` block in ``out_dir``."""
    source = spec.get("source")
    if source == "hub":
        from huggingface_hub import snapshot_download

        try:
            snapshot = Path(snapshot_download(repo_id=spec["repo_id"],
                                              revision=spec["revision"],
                                              allow_patterns=ALLOW_PATTERNS))
        except Exception as err:  # network, auth, or offline cache miss: say which model
            raise FileNotFoundError(f"fetch-model: cannot get {spec['repo_id']} at revision "
                                    f"{spec['revision']}: {err}") from err
        metadata = {"source": "hub", "repo_id": spec["repo_id"], "revision": spec["revision"]}
    elif source == "local":
        snapshot = Path(spec["path"])
        if not (snapshot / "config.json").is_file():
            raise FileNotFoundError(f"models.*.path: {snapshot} has no config.json; "
                                    "expected a Hugging Face checkpoint directory")
        metadata = {"source": "local", "path": str(snapshot.resolve())}
    else:
        raise ValueError(f"fetch-model: source {source!r} cannot be fetched "
                         "(expected 'hub' or 'local'; 'build' models are built)")
    with atomic_directory(out_dir) as tmp:
        _link_or_copy_tree(snapshot, tmp)
        manifest = write_manifest(tmp, metadata)
    log.info("fetched %s into %s (%d files)", metadata, out_dir, len(manifest["files"]))
    return manifest

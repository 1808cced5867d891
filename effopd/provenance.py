"""Content hashes that tie every artifact to the exact files that made it."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def directory_manifest(directory: str | Path, exclude: tuple[str, ...] = ("manifest.json",)
                       ) -> dict[str, str]:
    """``{relative path: sha256}`` for every regular file below ``directory`` (sorted).

    Files whose name is in ``exclude`` and anything inside a hidden directory
    (such as huggingface_hub's ``.cache``) are left out.
    """
    root = Path(directory)
    manifest = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or path.name in exclude or any(
                part.startswith(".") for part in relative.parts[:-1]):
            continue
        manifest[relative.as_posix()] = sha256_file(path)
    return manifest

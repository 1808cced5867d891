"""Saving Hugging Face checkpoints atomically with a manifest, and verifying them on load.

A checkpoint's ``manifest.json`` records, for every file, its sha256 and size;
the resume state ``training_state.pt`` is listed apart (``training_state``) so
that it can be deleted without invalidating the checkpoint; ``self_sha256`` is
the sha256 of the manifest's own content (sorted-key JSON without that key), so
a damaged manifest is told apart from a damaged weight file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from effopd.errors import CheckpointError
from effopd.io import atomic_write_json
from effopd.provenance import directory_manifest, sha256_file

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MANIFEST_NAME = "manifest.json"
TRAINING_STATE_NAME = "training_state.pt"
ASIDE_SUFFIX = ".replaced"
# bytes per element of the safetensors dtypes
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
                "F8_E4M3": 1, "F8_E5M2": 1}


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on success it replaces ``path``.

    Replacement has no window without a complete copy: the old ``path`` is
    renamed aside (``.<name>.replaced``), the new one renamed in, then the old
    deleted. A kill between the two renames leaves the old copy aside, and
    :func:`recover_directory` puts it back. On an exception the temporary
    directory is deleted and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    aside = target.with_name(f".{target.name}{ASIDE_SUFFIX}")
    try:
        yield tmp
        if target.exists():
            target.rename(aside)
        tmp.rename(target)
        if aside.exists():
            shutil.rmtree(aside)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def recover_directory(path: str | Path) -> None:
    """Finish or undo an interrupted :func:`atomic_directory` for ``path``.

    A copy renamed aside comes back when ``path`` is missing (else it is
    deleted); unfinished temporary directories ``.<name>.*`` are deleted.
    """
    target = Path(path)
    aside = target.with_name(f".{target.name}{ASIDE_SUFFIX}")
    if aside.exists():
        if target.exists():
            shutil.rmtree(aside)
        else:
            aside.rename(target)
    if target.parent.is_dir():
        for partial in target.parent.glob(f".{target.name}.*"):
            if partial.is_dir() and partial != aside:
                shutil.rmtree(partial)


def _self_sha256(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "self_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def write_manifest(directory: str | Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json``: ``metadata``, the sha256 and size of every file in
    ``directory``, the training state's apart, and the manifest's own checksum."""
    directory = Path(directory)
    files = directory_manifest(directory, exclude=(MANIFEST_NAME, TRAINING_STATE_NAME))
    manifest = {**metadata, "files": files,
                "sizes": {name: (directory / name).stat().st_size for name in files}}
    state = directory / TRAINING_STATE_NAME
    if state.exists():
        manifest["training_state"] = {"sha256": sha256_file(state),
                                      "size": state.stat().st_size}
    manifest["self_sha256"] = _self_sha256(manifest)
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    out_dir: str | Path, metadata: dict[str, Any],
                    training_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Save model (safetensors) and tokenizer to ``out_dir`` atomically, with a manifest.

    ``training_state`` (optimizer moments etc.) goes to ``training_state.pt``
    beside the weights; it is resume state, not part of the model, and is
    listed apart in the manifest so that it can be deleted later.
    """
    from safetensors import SafetensorError

    try:
        with atomic_directory(out_dir) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            if training_state is not None:
                torch.save(training_state, tmp / TRAINING_STATE_NAME)
            manifest = write_manifest(tmp, metadata)
    except (OSError, RuntimeError, SafetensorError) as err:  # e.g. a full disk
        message = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{out_dir}: writing the checkpoint failed ({message}); "
                              "nothing was written") from err
    return manifest


# --------------------------------------------------------------------------- verification


def check_safetensors_file(path: str | Path) -> None:
    """Check a safetensors file's structure without reading its tensors.

    Layout: 8 bytes little-endian header length n, n bytes of JSON header
    (name -> dtype, shape, data_offsets [begin, end]), then the data; a sound
    file has every tensor's ``end - begin = prod(shape) * bytes(dtype)`` and a
    size of exactly ``8 + n + max(end)``. Raises :class:`CheckpointError`
    naming the file and the fault (truncated, overwritten header, ...).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, "
                                      "no header)")
            length = int.from_bytes(head, "little")
            if 8 + length > size:
                raise CheckpointError(f"{path}: corrupt or truncated safetensors header "
                                      f"(header length {length} exceeds file size {size})")
            raw = handle.read(length)
    except OSError as err:
        raise CheckpointError(f"{path}: unreadable ({err.strerror or err})") from err
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt safetensors header (not valid JSON: "
                              f"{err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in entry["data_offsets"])
            width = _DTYPE_BYTES.get(entry["dtype"])  # an exotic dtype: offsets only
            expected = None if width is None else math.prod(entry["shape"]) * width
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: corrupt safetensors header (entry {name!r}: "
                                  f"{err!r})") from err
        if stop < begin or (expected is not None and stop - begin != expected):
            raise CheckpointError(f"{path}: corrupt safetensors header (tensor {name!r} "
                                  f"spans {stop - begin} bytes, its shape needs {expected})")
        end = max(end, stop)
    if 8 + length + end != size:
        raise CheckpointError(f"{path}: truncated or padded safetensors file ({size} bytes, "
                              f"header says {8 + length + end})")


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The checkpoint's manifest, checked against its own checksum; None if it has none."""
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: corrupt manifest (not valid JSON: {err})") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise CheckpointError(f"{path}: corrupt manifest (no 'files' mapping)")
    if "self_sha256" in manifest and manifest["self_sha256"] != _self_sha256(manifest):
        raise CheckpointError(f"{path}: corrupt manifest (its content does not match its "
                              "own checksum self_sha256)")
    return manifest


def _check_file(path: Path, size: int | None, digest: str | None, sha256: bool) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (listed in the manifest)")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise CheckpointError(f"{path}: size {actual} bytes differs from the manifest's "
                              f"{size} (truncated or overwritten)")
    if sha256 and digest is not None and sha256_file(path) != digest:
        raise CheckpointError(f"{path}: sha256 differs from the manifest (corrupt file)")


def verify_checkpoint(directory: str | Path, sha256: bool = True,
                      training_state: bool = False) -> dict[str, Any] | None:
    """Verify a checkpoint directory before loading it; return its manifest (None if none).

    With a manifest: every listed file exists and has its recorded size, and
    (``sha256``) its recorded sha256; ``training_state`` also checks
    ``training_state.pt`` (missing counts as a fault). Always: every
    ``*.safetensors`` file passes :func:`check_safetensors_file` (which also
    covers checkpoints of other tools, such as transformers' ``checkpoint-N``).
    Raises :class:`CheckpointError` naming the file and the fault.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointError(f"{root}: checkpoint directory not found")
    if not (root / "config.json").is_file():
        raise CheckpointError(f"{root}: not a model checkpoint (no config.json)")
    manifest = read_manifest(root)
    if manifest is not None:
        sizes = manifest.get("sizes", {})
        for name, digest in manifest["files"].items():
            _check_file(root / name, sizes.get(name), digest, sha256)
        if training_state:
            recorded = manifest.get("training_state")
            if recorded is None:
                raise CheckpointError(f"{root / MANIFEST_NAME}: records no training state")
            _check_file(root / TRAINING_STATE_NAME, recorded["size"], recorded["sha256"],
                        sha256=True)
    for path in sorted(root.glob("*.safetensors")):
        check_safetensors_file(path)
    return manifest

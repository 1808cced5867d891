"""Float32 Hugging Face checkpoints from verl's FSDP shards, one tensor at a time.

verl's FSDP checkpoint manager (``verl/utils/checkpoint/fsdp_checkpoint_manager.py``,
0.9.1) saves, per step, ``global_step_N/actor/``:

- ``model_world_size_W_rank_R.pt`` for R = 0..W-1: ``torch.save`` of the actor's
  sharded state dict (FSDP2: ``model.state_dict()``; FSDP1: the same under
  ``SHARDED_STATE_DICT``). A sharded parameter is a ``DTensor`` whose local
  tensor is rank R's chunk (``torch.chunk`` semantics along the ``Shard(dim)``
  placement, so uneven and empty chunks occur); a plain tensor is replicated.
  verl keeps the actor's master weights in float32, so these are exact.
- ``fsdp_config.json`` (``FSDP_version``, ``world_size``) and ``huggingface/``
  (config, generation config, tokenizer).

verl's own merger (``verl.model_merger``) casts every tensor to bfloat16, which
can erase learning-rate-1e-6 updates (SPEC section 4). :func:`export_fsdp_checkpoint`
instead writes the float32 parameters: each rank file is memory-mapped, every
parameter is assembled from its W local chunks, checked against the DTensor's
global shape, and written to safetensors files of at most ``max_shard_bytes``,
so the peak memory is one output file, never the model W times.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from effopd.io import atomic_write_json
from effopd.models.checkpoint import atomic_directory, write_manifest

log = logging.getLogger(__name__)

RANK_FILE = re.compile(r"^model_world_size_(\d+)_rank_(\d+)\.pt$")
# Wrapper prefixes FSDP1 / activation checkpointing can leave in parameter names.
WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
HF_AUX_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken", ".py")


def rank_files(actor_dir: str | Path) -> list[Path]:
    """The model shard files of ``actor_dir`` in rank order; all W of them must be present."""
    actor_dir = Path(actor_dir)
    found: dict[int, dict[int, Path]] = {}
    for path in actor_dir.iterdir() if actor_dir.is_dir() else []:
        match = RANK_FILE.match(path.name)
        if match:
            found.setdefault(int(match.group(1)), {})[int(match.group(2))] = path
    if not found:
        raise FileNotFoundError(f"{actor_dir}: no model_world_size_W_rank_R.pt files (is this "
                                "verl's global_step_N/actor directory?)")
    if len(found) > 1:
        raise ValueError(f"{actor_dir}: shards of several world sizes {sorted(found)}")
    (world_size, ranks), = found.items()
    config = actor_dir / "fsdp_config.json"
    if config.is_file():
        declared = json.loads(config.read_text(encoding="utf-8")).get("world_size")
        if declared is not None and int(declared) != world_size:
            raise ValueError(f"{config}: world_size {declared} but the shards say {world_size}")
    missing = sorted(set(range(world_size)) - set(ranks))
    if missing:
        raise FileNotFoundError(f"{actor_dir}: world size {world_size} but ranks {missing} "
                                "have no model_world_size_*_rank_*.pt file")
    return [ranks[r] for r in range(world_size)]


def clean_name(name: str) -> str:
    """A Hugging Face parameter name: FSDP / checkpoint wrapper prefixes removed."""
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _is_dtensor(value: Any) -> bool:
    return type(value).__name__ == "DTensor" and hasattr(value, "_local_tensor")


def assemble(name: str, pieces: list[Any]) -> torch.Tensor:
    """The full tensor from the W ranks' entries of one parameter, as float32.

    A DTensor on a 1-D mesh with ``Shard(d)`` is the concatenation of the local
    chunks along ``d`` in rank order; on a (replicate, shard) 2-D mesh (HSDP)
    only the ranks at replica 0 hold distinct chunks, in the order of the mesh.
    A ``Replicate`` DTensor or a plain tensor must be identical on every rank.
    The result is checked against the DTensor's global shape.
    """
    first = pieces[0]
    if not _is_dtensor(first):
        for rank, other in enumerate(pieces[1:], start=1):
            if other.shape != first.shape or not torch.equal(other, first):
                raise ValueError(f"{name}: plain tensor differs between rank 0 and rank {rank};"
                                 " expected a replicated buffer")
        return first.detach().to(torch.float32).contiguous()
    placements = tuple(first.placements)
    mesh = first.device_mesh.mesh
    shard_dims = [i for i, p in enumerate(placements) if p.is_shard()]
    if any(p.is_partial() for p in placements) or len(shard_dims) > 1:
        raise NotImplementedError(f"{name}: placements {placements} (partial or 2-D sharding, "
                                  "e.g. FSDP + tensor parallel) are not supported")
    if not shard_dims:
        full = first._local_tensor
    else:
        mesh_dim = shard_dims[0]
        index = [0] * mesh.ndim  # replica 0 along every replicate dimension
        index[mesh_dim] = slice(None)
        ranks = [int(r) for r in mesh[tuple(index)].flatten()]
        full = torch.cat([pieces[r]._local_tensor for r in ranks],
                         dim=placements[mesh_dim].dim)
    if tuple(full.shape) != tuple(first.shape):
        raise ValueError(f"{name}: assembled shape {tuple(full.shape)} differs from the "
                         f"DTensor's global shape {tuple(first.shape)}")
    return full.detach().to(torch.float32).contiguous()


def export_fsdp_checkpoint(actor_dir: str | Path, out_dir: str | Path,
                           max_shard_bytes: int = 4 * 1024 ** 3,
                           metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write verl's ``global_step_N/actor`` as a float32 HF safetensors checkpoint.

    Output: ``model.safetensors`` (or ``model-0000i-of-0000n.safetensors`` plus
    ``model.safetensors.index.json`` past ``max_shard_bytes``), the files of
    ``huggingface/`` with ``dtype: float32`` in config.json, and ``manifest.json``
    (``metadata``, the source dtypes, the world size, sha256 of every file).
    With tied word embeddings ``lm_head.weight`` is left out, as
    ``save_pretrained`` does. Written atomically.
    """
    actor_dir = Path(actor_dir)
    hf_dir = actor_dir / "huggingface"
    if not (hf_dir / "config.json").is_file():
        raise FileNotFoundError(f"{hf_dir}/config.json missing: verl writes the model config "
                                "and tokenizer there; cannot export without them")
    files = rank_files(actor_dir)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    states = [torch.load(path, map_location="cpu", mmap=True, weights_only=False)
              for path in files]
    names = list(states[0])
    for path, state in zip(files[1:], states[1:], strict=True):
        if set(state) != set(names):
            raise ValueError(f"{path}: parameter names differ from {files[0].name}: "
                             f"{sorted(set(state) ^ set(names))[:5]}")
    tied = bool(config.get("tie_word_embeddings", False))
    source_dtypes: dict[str, int] = {}
    with atomic_directory(out_dir) as tmp:
        current: dict[str, torch.Tensor] = {}
        current_bytes = total = n_files = 0
        for name in names:
            hf_name = clean_name(name)
            if tied and hf_name == "lm_head.weight":
                continue
            pieces = [state[name] for state in states]
            dtype = str(getattr(pieces[0], "dtype", "")).removeprefix("torch.")
            source_dtypes[dtype] = source_dtypes.get(dtype, 0) + 1
            tensor = assemble(name, pieces)
            nbytes = tensor.numel() * tensor.element_size()
            if current and current_bytes + nbytes > max_shard_bytes:
                n_files = _write_part(current, tmp, n_files)
                current, current_bytes = {}, 0
            current[hf_name] = tensor
            current_bytes += nbytes
            total += nbytes
        n_files = _write_part(current, tmp, n_files)
        weight_map = _rename_parts(tmp, n_files)
        if n_files > 1:
            atomic_write_json(tmp / "model.safetensors.index.json",
                              {"metadata": {"total_size": total}, "weight_map": weight_map})
        for path in sorted(hf_dir.iterdir()):
            if path.is_file() and path.suffix in HF_AUX_SUFFIXES:
                shutil.copy2(path, tmp / path.name)
        config["dtype"] = "float32"
        config.pop("torch_dtype", None)
        atomic_write_json(tmp / "config.json", config)
        if set(source_dtypes) - {"float32"}:
            log.warning("%s: shards hold %s, not only float32; the export is exact only "
                        "up to that precision", actor_dir, source_dtypes)
        manifest = write_manifest(tmp, {**(metadata or {}), "source": str(actor_dir),
                                        "format": "verl-fsdp", "world_size": len(files),
                                        "source_dtypes": source_dtypes, "dtype": "float32"})
    del states
    return manifest


def _write_part(tensors: dict[str, torch.Tensor], tmp: Path, n_written: int) -> int:
    """Save one output file under a temporary part name; return the number written so far."""
    save_file(tensors, tmp / f".part-{n_written:05d}.safetensors", metadata={"format": "pt"})
    return n_written + 1


def _rename_parts(tmp: Path, n_files: int) -> dict[str, str]:
    """Give the parts their HF names; return the weight map (tensor -> file)."""
    from safetensors import safe_open

    weight_map: dict[str, str] = {}
    for i in range(n_files):
        name = ("model.safetensors" if n_files == 1
                else f"model-{i + 1:05d}-of-{n_files:05d}.safetensors")
        (tmp / f".part-{i:05d}.safetensors").rename(tmp / name)
        with safe_open(tmp / name, framework="pt") as handle:
            weight_map.update(dict.fromkeys(handle.keys(), name))
    return weight_map

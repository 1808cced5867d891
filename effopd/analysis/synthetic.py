"""Synthetic Qwen3 checkpoints with planted updates, for tests and benchmarks.

A planted series shares one low-rank direction per 2-D block weight,

    Delta_t = f_t * L + noise_t,      L = sum_{i<r} s_i u_i v_i^T (orthonormal u, v),

so that later checkpoints (f_t -> 1) align with the final one, plus small
dense noise on every tensor (embeddings and norms included). Randomness is
seeded per tensor from (seed, crc32(name)), so tensors can be generated one at
a time in any order.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from effopd.analysis.checkpoint_io import (
    INDEX_NAME,
    WEIGHTS_NAME,
    CheckpointLike,
    block_matrix_names,
    open_checkpoint,
    param_sort_key,
    write_modified_checkpoint,
)

PathLike = str | os.PathLike[str]


def qwen3_config(**overrides: Any) -> Any:
    """A ``transformers.Qwen3Config``; defaults to a tiny model (vocab 50, hidden 32, 3 layers)."""
    from transformers import Qwen3Config

    settings = {"vocab_size": 50, "hidden_size": 32, "intermediate_size": 64,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                "head_dim": 8, "tie_word_embeddings": False}
    settings.update(overrides)
    return Qwen3Config(**settings)


def qwen3_shapes(config: Any) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor ``save_pretrained`` writes (lm_head dropped when tied)."""
    from transformers import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return dict(sorted(shapes.items(), key=lambda item: param_sort_key(item[0])))


def tensor_generator(seed: int, name: str, salt: str = "") -> torch.Generator:
    """A CPU generator seeded from (seed, name, salt), independent of generation order."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{name}|{salt}".encode()))


def orthonormal_columns(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """An n x k matrix with orthonormal columns (QR of a Gaussian matrix), float64."""
    q, r = torch.linalg.qr(torch.randn(n, k, generator=generator, dtype=torch.float64))
    return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)


def low_rank_matrix(shape: tuple[int, int], singular_values: Sequence[float],
                    generator: torch.Generator) -> torch.Tensor:
    """sum_i s_i u_i v_i^T with random orthonormal u (m) and v (n), float64."""
    s = torch.as_tensor(list(singular_values), dtype=torch.float64)
    u = orthonormal_columns(shape[0], len(s), generator)
    v = orthonormal_columns(shape[1], len(s), generator)
    return (u * s) @ v.mT


def write_random_qwen3(out_dir: PathLike, config: Any, seed: int = 0,
                       dtype: torch.dtype = torch.float32) -> Path:
    """Write a random Qwen3 checkpoint (config.json + model.safetensors) without building a model.

    2-D tensors ~ N(0, initializer_range^2); 1-D norm weights ~ 1 + N(0, 0.02^2).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    std = float(getattr(config, "initializer_range", 0.02))
    tensors = {}
    for name, shape in qwen3_shapes(config).items():
        noise = torch.randn(shape, generator=tensor_generator(seed, name, "base"))
        tensors[name] = (noise * std if len(shape) == 2 else 1 + 0.02 * noise).to(dtype)
    save_file(tensors, out / WEIGHTS_NAME, metadata={"format": "pt"})
    config.dtype = dtype
    config.architectures = ["Qwen3ForCausalLM"]
    config.save_pretrained(out)
    return out


def write_planted_checkpoint(base_dir: CheckpointLike, out_dir: PathLike, fraction: float,
                             rank: int = 4, scale: float = 1e-2, noise: float = 1e-4,
                             seed: int = 0, noise_seed: int = 1) -> Path:
    """Write theta_0 + fraction * L + noise for a planted series (module docstring).

    L per 2-D block weight has ``rank`` singular values scale * (1, 1/2, 1/3, ...),
    seeded by ``seed`` (shared across a series); the dense Gaussian noise of
    standard deviation ``noise`` on every tensor is seeded by ``noise_seed``
    (one per checkpoint).
    """
    matrices = set(block_matrix_names(base_dir))
    values = [scale / (i + 1) for i in range(rank)]

    def transform(name: str, theta0: torch.Tensor) -> torch.Tensor:
        delta = noise * torch.randn(theta0.shape, generator=tensor_generator(noise_seed, name))
        if name in matrices:
            planted = low_rank_matrix(tuple(theta0.shape), values, tensor_generator(seed, name))
            delta += fraction * planted.to(delta.dtype)
        return theta0 + delta.to(theta0.device)

    return write_modified_checkpoint(base_dir, out_dir, transform, overwrite=True,
                                     provenance={"kind": "planted", "fraction": fraction,
                                                 "rank": rank, "scale": scale, "noise": noise})


def shard_checkpoint(src_dir: CheckpointLike, out_dir: PathLike, n_shards: int = 2) -> Path:
    """Rewrite a single-file checkpoint as ``n_shards`` shards plus the index JSON.

    Tensors are dealt to shards in forward-pass order, contiguous runs of
    roughly equal count; other files are copied.
    """
    src = open_checkpoint(src_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = load_file(src.directory / WEIGHTS_NAME)
    names = src.names
    per_shard = -(-len(names) // n_shards)
    weight_map, total = {}, 0
    for index in range(n_shards):
        file_name = f"model-{index + 1:05d}-of-{n_shards:05d}.safetensors"
        chunk = {name: tensors[name] for name in names[index * per_shard:(index + 1) * per_shard]}
        save_file(chunk, out / file_name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(chunk, file_name))
        total += sum(t.numel() * t.element_size() for t in chunk.values())
    (out / INDEX_NAME).write_text(json.dumps({"metadata": {"total_size": total},
                                              "weight_map": weight_map}, indent=2))
    for path in src.directory.iterdir():
        if path.is_file() and path.suffix == ".json":
            (out / path.name).write_bytes(path.read_bytes())
    return out


def planted_series(base_dir: CheckpointLike, out_root: PathLike,
                   fractions: Mapping[str, float], **planted: Any) -> dict[str, Path]:
    """Write one planted checkpoint per label (``fractions``: label -> f_t) under ``out_root``."""
    root = Path(out_root)
    return {label: write_planted_checkpoint(base_dir, root / label, fraction,
                                            noise_seed=index + 1, **planted)
            for index, (label, fraction) in enumerate(fractions.items())}

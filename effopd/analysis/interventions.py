"""Checkpoints built from theta_0 and an update, for the accuracy analyses (SPEC section 4).

Each builder streams the base through
:func:`effopd.analysis.checkpoint_io.write_modified_checkpoint`: per tensor it
reads theta_0 and theta_t, forms the new tensor in float32 (at least), and
casts back to the base dtype (or ``out_dtype``) once, at the end. Note that a
bf16 output can round small updates away (lr 1e-6 updates on O(1e-2) weights):
pass ``out_dtype=torch.float32`` to keep them.

- scaled_update:   theta_0 + alpha * Delta                         (every tensor)
- injected_update: theta_0 + Delta where ``select(name)``, else theta_0 bit for bit
- rank_k_rescaled: theta_0 + alpha * (||Delta||_F / ||Delta_k||_F) * Delta_k
                   per 2-D block weight (Delta_k its best rank-k approximation)

Every written directory carries ``effopd_provenance.json`` (what was built from what).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from effopd.analysis.checkpoint_io import (
    CheckpointLike,
    block_matrix_names,
    open_checkpoint,
    parse_param_name,
    read_tensor,
    write_modified_checkpoint,
)
from effopd.analysis.spectra import rank_k_approximation
from effopd.device import DeviceLike, resolve_device

Selector = Callable[[str], bool]
PathLike = str | os.PathLike[str]
REST_OPTIONS = ("base", "scaled")


def _provenance(kind: str, base: CheckpointLike, ckpt: CheckpointLike, **params: object) -> dict:
    return {"kind": kind, "base": str(open_checkpoint(base).directory),
            "checkpoint": str(open_checkpoint(ckpt).directory), **params}


def _delta_reader(base: CheckpointLike, ckpt: CheckpointLike,
                  device: torch.device) -> Callable[[str, torch.Tensor], torch.Tensor]:
    """Return delta(name, theta_0) = theta_t - theta_0, reading theta_t from ``ckpt``."""
    base, ckpt = open_checkpoint(base), open_checkpoint(ckpt)

    def delta(name: str, theta0: torch.Tensor) -> torch.Tensor:
        theta = read_tensor(ckpt, name, dtype=theta0.dtype, device=device)
        if theta.shape != theta0.shape:
            raise ValueError(f"tensor {name!r}: shape {tuple(theta.shape)} in {ckpt.directory} "
                             f"differs from {tuple(theta0.shape)} in base {base.directory}")
        return theta.sub_(theta0)

    return delta


def scaled_update(base_dir: CheckpointLike, ckpt_dir: CheckpointLike, alpha: float,
                  out_dir: PathLike, *, device: DeviceLike = "cpu",
                  out_dtype: torch.dtype | None = None, overwrite: bool = False) -> Path:
    """Write theta_0 + alpha * (theta_t - theta_0) for every tensor.

    alpha = 0 gives theta_0, alpha = 1 gives theta_t up to float32 rounding.
    A tensor the training did not move stays theta_0 exactly.
    """
    device = resolve_device(device)
    delta = _delta_reader(base_dir, ckpt_dir, device)

    def transform(name: str, theta0: torch.Tensor) -> torch.Tensor:
        return theta0 + alpha * delta(name, theta0)

    return write_modified_checkpoint(
        base_dir, out_dir, transform, device=device, out_dtype=out_dtype, overwrite=overwrite,
        provenance=_provenance("scaled_update", base_dir, ckpt_dir, alpha=alpha))


def injected_update(base_dir: CheckpointLike, ckpt_dir: CheckpointLike, out_dir: PathLike,
                    select: Selector, *, device: DeviceLike = "cpu",
                    out_dtype: torch.dtype | None = None, overwrite: bool = False) -> Path:
    """Write theta_0 + Delta for tensors with ``select(name)`` true, theta_0 elsewhere.

    Non-selected tensors are bit-identical to the base (the float32 round trip
    is exact) unless ``out_dtype`` changes their dtype. Selectors:
    :class:`LayerWindow`, :func:`is_mlp`, :func:`is_attention`,
    :func:`is_embedding`, or any ``Callable[[str], bool]``. With tied
    embeddings (no ``lm_head`` tensor) the embedding update also moves the output head.
    """
    device = resolve_device(device)
    delta = _delta_reader(base_dir, ckpt_dir, device)

    def transform(name: str, theta0: torch.Tensor) -> torch.Tensor:
        return theta0 + delta(name, theta0) if select(name) else theta0

    return write_modified_checkpoint(
        base_dir, out_dir, transform, device=device, out_dtype=out_dtype, overwrite=overwrite,
        provenance=_provenance("injected_update", base_dir, ckpt_dir, select=repr(select)))


def rank_k_rescaled(base_dir: CheckpointLike, ckpt_dir: CheckpointLike, k: int, alpha: float,
                    out_dir: PathLike, *, rest: str = "base", method: str = "gram",
                    device: DeviceLike = "cpu", out_dtype: torch.dtype | None = None,
                    overwrite: bool = False) -> Path:
    """Write theta_0 + alpha * (||Delta||_F / ||Delta_k||_F) * Delta_k for each 2-D block weight.

    Delta_k is the best rank-k approximation of Delta
    (:func:`effopd.analysis.spectra.rank_k_approximation`), rescaled to the norm
    of the full update; a zero update stays theta_0. Every other tensor
    (block norms, embeddings, final norm, head) follows ``rest``:

    - ``"base"`` (default): theta_0, as the authors' ``Analysis/eval/upd_rank.py``
      does (it only edits 2-D ``self_attn``/``mlp`` weights), so the accuracy
      measures the rank-k directions of the projections alone;
    - ``"scaled"``: theta_0 + alpha * Delta.
    """
    if rest not in REST_OPTIONS:
        raise ValueError(f"rest must be one of {REST_OPTIONS}, got {rest!r}")
    device = resolve_device(device)
    delta = _delta_reader(base_dir, ckpt_dir, device)
    matrices = set(block_matrix_names(base_dir))

    def transform(name: str, theta0: torch.Tensor) -> torch.Tensor:
        if name not in matrices:
            return theta0 + alpha * delta(name, theta0) if rest == "scaled" else theta0
        update = delta(name, theta0)
        approx = rank_k_approximation(update, k, method=method)
        approx_norm = float(torch.linalg.vector_norm(approx, dtype=torch.float64))
        if approx_norm == 0:
            return theta0
        scale = float(torch.linalg.vector_norm(update, dtype=torch.float64)) / approx_norm
        return theta0 + (alpha * scale) * approx

    return write_modified_checkpoint(
        base_dir, out_dir, transform, device=device, out_dtype=out_dtype, overwrite=overwrite,
        provenance=_provenance("rank_k_rescaled", base_dir, ckpt_dir, k=k, alpha=alpha,
                               rest=rest, method=method))


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True)
class LayerWindow:
    """Selector of every tensor in blocks start, ..., start + size - 1 (norms included)."""

    start: int
    size: int

    def __call__(self, name: str) -> bool:
        layer = parse_param_name(name).layer
        return layer is not None and self.start <= layer < self.start + self.size


def sliding_windows(num_layers: int, size: int, stride: int) -> list[LayerWindow]:
    """Windows [start, start + size) for start = 0, stride, 2 stride, ...; the last ends at the top.

    When (num_layers - size) is not a multiple of ``stride`` a final window
    [num_layers - size, num_layers) is added, so every layer is covered.
    """
    if not 1 <= size <= num_layers or stride < 1:
        raise ValueError(f"need 1 <= size <= num_layers and stride >= 1, got size={size}, "
                         f"num_layers={num_layers}, stride={stride}")
    starts = list(range(0, num_layers - size + 1, stride))
    if starts[-1] != num_layers - size:
        starts.append(num_layers - size)
    return [LayerWindow(start, size) for start in starts]


def is_mlp(name: str) -> bool:
    """Selector: MLP projections (gate, up, down)."""
    return parse_param_name(name).group == "mlp"


def is_attention(name: str) -> bool:
    """Selector: attention projections q, k, v, o and the per-head q_norm, k_norm."""
    return parse_param_name(name).group == "attention"


def is_embedding(name: str) -> bool:
    """Selector: the input embedding matrix."""
    return parse_param_name(name).group == "embedding"


def num_layers(ckpt: CheckpointLike) -> int:
    """Number of transformer blocks, from the tensor names (1 + the largest layer index)."""
    layers = [parse_param_name(n).layer for n in open_checkpoint(ckpt).names]
    indices = [layer for layer in layers if layer is not None]
    return 1 + max(indices) if indices else 0



def cast_survival(base_dir: CheckpointLike, candidate_dir: CheckpointLike,
                  dtype: torch.dtype) -> dict[str, float]:
    """How much of an intervention survives the cast of the evaluation dtype.

    Over every floating tensor, with theta_0 the base and c the candidate (both
    read as float32)::

        changed   = #{ c != theta_0 }
        surviving = #{ c != theta_0  and  cast(c) != cast(theta_0) }
        fraction  = surviving / changed          (1.0 when nothing changed)

    ``cast`` rounds to ``dtype``; the evaluated model is cast(c) and the base
    scores as cast(theta_0), so an element with cast(c) == cast(theta_0) was
    erased (lr-1e-6 updates on O(1e-2) weights vanish in bf16).
    """
    base, candidate = open_checkpoint(base_dir), open_checkpoint(candidate_dir)
    changed = surviving = 0
    for name in base.names:
        theta0 = read_tensor(base, name)
        if not theta0.is_floating_point():
            continue
        value = read_tensor(candidate, name)
        moved = value != theta0
        changed += int(moved.sum())
        surviving += int((moved & (value.to(dtype) != theta0.to(dtype))).sum())
    return {"changed": changed, "surviving": surviving,
            "fraction": surviving / changed if changed else 1.0}

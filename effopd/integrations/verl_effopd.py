"""EffOPD inside verl's FSDP actor: the worker side of the line search.

What is built and tested (CPU, gloo, two ranks, torch's own FSDP2 and FSDP1,
tests/test_verl_effopd.py): on each rank,

- :func:`local_block_params` -- the actor's extrapolated parameters (rule
  ``blocks`` or ``authors``, :func:`effopd.training.extrapolation.is_extrapolated`)
  as this rank's float32 local shards (the DTensor's ``_local_tensor``: verl
  keeps the FSDP master weights in float32);
- :func:`shard_line_search` -- :func:`effopd.training.extrapolation.line_search`
  run on those shards. The extrapolation theta_a + m (theta_t - theta_a) is
  elementwise, so running it shard by shard is the same arithmetic as on the
  gathered full float32 parameters (the test checks the result bit for bit
  against the unsharded model); ``score`` must be collective: every rank calls
  it and gets the same number;
- :func:`save_anchor` / :func:`load_anchor` -- the anchor's local shards beside
  verl's ``model_world_size_W_rank_R.pt`` (``effopd_anchor_world_size_W_rank_R.pt``),
  so a resumed run continues the search from the stored anchor.

The trainer mode that drives these functions from verl's driver (one RPC per
step of the search, the rollout push, verl's validation as the score, the
re-save) is :mod:`effopd.integrations.verl_plugin`; it has run on the CPU
(tests/on_verl_cpu), not yet on GPUs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from effopd.training.extrapolation import (
    INITIAL_FACTOR,
    MAX_ITERATIONS,
    SearchRecord,
    is_extrapolated,
    line_search,
    move_to,
    snapshot,
)

WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _clean(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def local_block_params(model: torch.nn.Module, rule: str = "blocks") -> dict[str, torch.Tensor]:
    """This rank's live local shards of the extrapolated parameters, by HF name.

    FSDP2 parameters are DTensors (their ``_local_tensor`` is the shard);
    FSDP1 with ``use_orig_params`` exposes views of the rank's flat shard (a
    parameter wholly on other ranks has no elements here). The tensors are the
    live storage: writing into them moves the model.
    """
    params = {}
    for name, param in model.named_parameters():
        name = _clean(name)
        if not is_extrapolated(name, rule):
            continue
        local = param._local_tensor if hasattr(param, "_local_tensor") else param.data
        if local.dtype != torch.float32:
            raise ValueError(f"{name}: FSDP shard is {local.dtype}; EffOPD extrapolates float32 "
                             "master weights (verl's FSDP actor keeps them in float32)")
        params[name] = local
    if not params:
        raise ValueError(f"no parameter matches the EffOPD rule {rule!r}")
    return params


def shard_line_search(model: torch.nn.Module, anchor: dict[str, torch.Tensor],
                      score: Callable[[], float], step: int,
                      max_iterations: int = MAX_ITERATIONS,
                      initial_factor: float = INITIAL_FACTOR, rule: str = "blocks"
                      ) -> tuple[list[SearchRecord], dict[str, torch.Tensor]]:
    """EffOPD's line search on this rank's shards; every rank calls it with the same scores.

    Returns the records (identical on every rank) and the new anchor (this
    rank's float32 shards). ``score`` is collective: it sees the model with the
    candidate written into every rank's shards.
    """
    return line_search(local_block_params(model, rule), anchor, score, step,
                       max_iterations=max_iterations, initial_factor=initial_factor)


class ShardSearch:
    """One rank's side of a search driven from elsewhere (verl's trainer, one RPC each).

    ``begin`` fixes d = theta_t - theta_a on this rank's shards; ``place(m)``
    writes theta_a + m d (float32; m = 1 restores theta_t exactly); ``finish(m)``
    leaves the weights at m and returns the new anchor. The same arithmetic as
    :func:`effopd.training.extrapolation.line_search` (it calls the same
    :func:`~effopd.training.extrapolation.move_to`).
    """

    def __init__(self, model: torch.nn.Module, anchor: dict[str, torch.Tensor],
                 rule: str = "blocks") -> None:
        self.params = local_block_params(model, rule)
        missing = set(self.params) ^ set(anchor)
        if missing:
            raise ValueError(f"anchor and model differ in {sorted(missing)[:5]}")
        self.anchor = anchor
        self.current = snapshot(self.params)
        self.direction = {n: self.current[n] - anchor[n].float() for n in self.params}

    def place(self, multiplier: float) -> None:
        move_to(self.params, self.anchor, self.direction, multiplier, self.current)

    def finish(self, multiplier: float) -> dict[str, torch.Tensor]:
        self.place(multiplier)
        return snapshot(self.params)


def initial_anchor(model: torch.nn.Module, rule: str = "blocks") -> dict[str, torch.Tensor]:
    """The anchor before the first search: float32 copies of the current shards."""
    return snapshot(local_block_params(model, rule))


def anchor_path(actor_dir: str | Path) -> Path:
    rank, world = dist.get_rank(), dist.get_world_size()
    return Path(actor_dir) / f"effopd_anchor_world_size_{world}_rank_{rank}.pt"


def save_anchor(anchor: dict[str, torch.Tensor], actor_dir: str | Path) -> Path:
    """Store this rank's anchor shards beside verl's model shards (checkpoint for resume)."""
    path = anchor_path(actor_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({name: t.detach().cpu() for name, t in anchor.items()}, tmp)
    tmp.replace(path)
    return path


def load_anchor(actor_dir: str | Path, model: torch.nn.Module,
                rule: str = "blocks") -> dict[str, torch.Tensor]:
    """This rank's stored anchor, checked against the model's shards (names, shapes)."""
    path = anchor_path(actor_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no EffOPD anchor for this rank (world size changed, "
                                "or the checkpoint predates the search)")
    anchor = torch.load(path, map_location="cpu", weights_only=True)
    live = local_block_params(model, rule)
    if set(anchor) != set(live):
        raise ValueError(f"{path}: anchor names differ from the model's: "
                         f"{sorted(set(anchor) ^ set(live))[:5]}")
    for name, tensor in live.items():
        if anchor[name].shape != tensor.shape:
            raise ValueError(f"{path}: {name} has shape {tuple(anchor[name].shape)}, the "
                             f"model's shard {tuple(tensor.shape)}")
    return {name: t.to(live[name].device) for name, t in anchor.items()}

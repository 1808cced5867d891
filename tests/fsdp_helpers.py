"""Two-process FSDP on CPU (gloo) for the verl-side tests: real torch FSDP, no GPU.

Workers are module-level functions so that ``torch.multiprocessing.spawn`` can
pickle them; each builds the tiny Qwen3 model from a saved checkpoint, shards
it with torch's own FSDP (``fully_shard``, FSDP2, as verl's ``strategy=fsdp2``;
or FSDP1 with a device mesh under ``SHARDED_STATE_DICT``, as verl's default
``strategy=fsdp``) and writes what verl's checkpoint manager writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist


def init_gloo(rank: int, world_size: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=world_size)


def load_tiny(model_dir: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def shard(model, version: int):
    """Wrap ``model`` as verl does: each decoder layer, then the root."""
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("fsdp",))
    if version == 2:
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy

    return FSDP(model, device_mesh=mesh, use_orig_params=True,
                sharding_strategy=ShardingStrategy.FULL_SHARD, device_id=torch.device("cpu"))


def save_verl_layout(model, version: int, actor_dir: Path, hf_source: str) -> None:
    """What verl's FSDPCheckpointManager.save_checkpoint writes for the model."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    actor_dir.mkdir(parents=True, exist_ok=True)
    if version == 2:
        state = model.state_dict()
    else:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import ShardedStateDictConfig, StateDictType

        with FSDP.state_dict_type(model, StateDictType.SHARDED_STATE_DICT,
                                  ShardedStateDictConfig()):
            state = model.state_dict()
    torch.save(state, actor_dir / f"model_world_size_{world_size}_rank_{rank}.pt")
    if rank == 0:
        from transformers import AutoConfig, AutoTokenizer

        hf = actor_dir / "huggingface"
        AutoConfig.from_pretrained(hf_source).save_pretrained(hf)
        AutoTokenizer.from_pretrained(hf_source).save_pretrained(hf)
        (actor_dir / "fsdp_config.json").write_text(json.dumps(
            {"FSDP_version": version, "world_size": world_size}))
    dist.barrier()


def write_shards_worker(rank: int, world_size: int, rendezvous: str, model_dir: str,
                        actor_dir: str, version: int) -> None:
    init_gloo(rank, world_size, rendezvous)
    try:
        model = shard(load_tiny(model_dir), version)
        save_verl_layout(model, version, Path(actor_dir), model_dir)
    finally:
        dist.destroy_process_group()


def spawn(worker, *args, world_size: int = 2, tmp: Path) -> None:
    """Run ``worker(rank, world_size, rendezvous, *args)`` in ``world_size`` processes."""
    import torch.multiprocessing as mp

    rendezvous = str(tmp / f"rdzv-{os.getpid()}-{id(args)}")
    mp.spawn(worker, args=(world_size, rendezvous, *args), nprocs=world_size, join=True)


def planted_anchor(model, rule: str) -> dict[str, torch.Tensor]:
    """theta - 0.01 * N(0, 1), seeded per parameter: the same on every rank and unsharded."""
    from effopd.training.extrapolation import is_extrapolated

    anchor = {}
    for index, (name, param) in enumerate(model.named_parameters()):
        if is_extrapolated(name, rule):
            noise = torch.randn(param.shape, generator=torch.Generator().manual_seed(index))
            anchor[name] = param.detach().float() - 0.01 * noise
    return anchor


def planted_score(params: dict, anchor: dict, best_multiplier: float, reduce=None):
    """-||theta - (theta_a + m* (theta_t - theta_a))||^2: maximal at the planted multiplier."""
    direction = {n: params[n].detach().clone() - anchor[n] for n in params}
    target = {n: anchor[n] + best_multiplier * direction[n] for n in params}

    def score() -> float:
        total = torch.zeros((), dtype=torch.float64)
        for name, tensor in params.items():
            total += ((tensor.double() - target[name].double()) ** 2).sum()
        if reduce is not None:
            reduce(total)
        return -float(total)
    return score


def line_search_worker(rank: int, world_size: int, rendezvous: str, model_dir: str, out: str,
                       version: int, rule: str) -> None:
    """Shard the tiny model, run the shard line search, store the gathered result on rank 0."""
    from effopd.integrations import verl_effopd

    init_gloo(rank, world_size, rendezvous)
    try:
        model = shard(load_tiny(model_dir), version)
        anchor_model = load_tiny(model_dir)
        full_anchor = planted_anchor(anchor_model, rule)
        with torch.no_grad():  # the anchor model holds the anchor; shard it the same way
            for name, param in anchor_model.named_parameters():
                if name in full_anchor:
                    param.copy_(full_anchor[name])
        anchor = verl_effopd.initial_anchor(shard(anchor_model, version), rule)
        live = verl_effopd.local_block_params(model, rule)
        score = planted_score(live, anchor, 7.0,
                              reduce=lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM))
        records, new_anchor = verl_effopd.shard_line_search(model, anchor, score, step=4,
                                                            rule=rule)
        # the RPC-shaped path verl's trainer drives: ShardSearch + search_multipliers
        from effopd.training.extrapolation import search_multipliers

        driven = shard(load_tiny(model_dir), version)
        search = verl_effopd.ShardSearch(driven, anchor, rule)
        score2 = planted_score(search.params, anchor, 7.0,
                               reduce=lambda t: dist.all_reduce(t, op=dist.ReduceOp.SUM))
        records2, best = search_multipliers(lambda m: (search.place(m), score2())[1], step=4)
        anchor2 = search.finish(best)
        assert [r.as_row() for r in records2] == [r.as_row() for r in records]
        assert all(torch.equal(anchor2[n], new_anchor[n]) for n in new_anchor)
        path = verl_effopd.save_anchor(new_anchor, Path(out) / "actor")
        reloaded = verl_effopd.load_anchor(Path(out) / "actor", model, rule)
        assert all(torch.equal(reloaded[n], new_anchor[n]) for n in new_anchor), path
        if version == 2:
            full = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
        else:
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            with FSDP.summon_full_params(model):
                full = {n.replace("_fsdp_wrapped_module.", ""): p.detach().clone()
                        for n, p in model.named_parameters()}
        if rank == 0:
            torch.save({"records": [r.as_row() for r in records], "params": full},
                       Path(out) / "result.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()

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

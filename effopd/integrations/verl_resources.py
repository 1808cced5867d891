"""What a verl run asks of the hardware: GPU pools, the GPUs that are there, logits memory.

No verl import here: the Snakefile reads :func:`gpu_request` to size the
``train`` rule, and :func:`effopd.integrations.verl_engine.train_with_verl` runs
:func:`check_gpus` before Ray starts.

- **Pools** (:func:`gpu_pools`): verl 0.9.1's ``_init_resource_pool_mgr``
  builds ``global_pool`` = ``[trainer.n_gpus_per_node] * trainer.nnodes``
  (actor, student rollout) and, when distilling (OPD, EffOPD),
  ``teacher_pool`` = ``[distillation.n_gpus_per_node] * distillation.nnodes``;
  every entry is one placement group on one node.
- **Request** (:func:`gpu_request`): the sum over both pools, what the
  ``train`` rule asks the scheduler for (``resources: gpu=N``).
- **Placement** (:func:`fits`): first-fit decreasing of the pools' per-node
  entries into the GPUs per node that are visible; :func:`check_gpus` refuses
  in one line when they do not fit.
- **Lease** (:func:`lease_gpus`): on a machine where nothing assigns GPU ids
  (Snakemake's local executor; SLURM sets ``CUDA_VISIBLE_DEVICES`` itself), a
  verl run takes ``flock`` leases on GPU ids and hands them to its Ray cluster as
  ``CUDA_VISIBLE_DEVICES``, so two runs side by side use different GPUs.
- **Logits** (:func:`logits_bytes`): tokens x vocabulary x bytes per element,
  the largest single tensor of an update's micro-batch.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from effopd.methods import algorithm_named

GUIDE = "config/README.md, 'First GPU run'"


def gpu_pools(training: dict[str, Any], method: str) -> dict[str, list[int]]:
    """verl's resource pools of one run of algorithm ``method``: pool name -> GPUs on each
    of its nodes (a teacher pool for an algorithm with a teacher)."""
    verl = training["verl"]
    pools = {"global_pool": [verl["n_gpus_per_node"]] * verl["nnodes"]}
    if algorithm_named(method).teacher:
        pools["teacher_pool"] = [verl["teacher_gpus_per_node"]] * verl["teacher_nnodes"]
    return pools


def gpu_request(training: dict[str, Any], method: str) -> int:
    """GPUs one verl run holds: the trainer pool plus, for OPD and EffOPD, the teacher pool."""
    return sum(sum(nodes) for nodes in gpu_pools(training, method).values())


def fits(pools: dict[str, list[int]], nodes: list[int]) -> bool:
    """Whether every per-node entry of the pools fits on one of ``nodes`` (GPUs per node).

    First-fit decreasing: the largest entries first, each on the first node with
    room; two entries may share a node (verl's pools do, on one machine).
    """
    free = sorted(nodes, reverse=True)
    for need in sorted((n for entries in pools.values() for n in entries), reverse=True):
        for index, room in enumerate(free):
            if room >= need:
                free[index] -= need
                break
        else:
            return False
    return True


def visible_gpus() -> tuple[list[int], str]:
    """GPUs per node that a run can use, and where they were counted.

    With ``RAY_ADDRESS`` set (a Ray cluster started beforehand, e.g. across SLURM
    nodes) the alive nodes' ``GPU`` resources; otherwise this machine's CUDA
    devices (``torch.cuda.device_count``, which honours ``CUDA_VISIBLE_DEVICES``,
    as the local Ray cluster verl starts does).
    """
    address = os.environ.get("RAY_ADDRESS")
    if address:
        import ray

        ray.init(address=address, log_to_driver=False)
        try:
            nodes = [int(node["Resources"].get("GPU", 0)) for node in ray.nodes() if node["Alive"]]
        finally:
            ray.shutdown()
        return nodes, f"the Ray cluster at RAY_ADDRESS={address}"
    import torch

    where = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [torch.cuda.device_count()], (
        "this machine" + (f" (CUDA_VISIBLE_DEVICES={where!r})" if where is not None else ""))


def check_gpus(training: dict[str, Any], method: str,
               nodes: list[int] | None = None, where: str = "") -> None:
    """Refuse in one line when verl's pools do not fit the visible GPUs."""
    if nodes is None:
        nodes, where = visible_gpus()
    pools = gpu_pools(training, method)
    if fits(pools, nodes):
        return
    spec = " + ".join(f"{name} {' + '.join(map(str, entries))}" for name, entries in pools.items())
    several = max(len(entries) for entries in pools.values()) > 1
    hint = ("pools on several nodes run on a Ray cluster started beforehand (RAY_ADDRESS)"
            if several and not os.environ.get("RAY_ADDRESS")
            else "give the job more GPUs or lower training.verl.n_gpus_per_node / "
                 "teacher_gpus_per_node")
    raise RuntimeError(
        f"engine verl, method {method}: verl's pools ({spec} = "
        f"{gpu_request(training, method)} GPUs) do not fit the GPUs of {where or 'the nodes'} "
        f"({' + '.join(map(str, nodes)) or 0} per node); {hint} ({GUIDE})")


LEASE_DIR = Path(tempfile.gettempdir()) / "effopd-gpu-leases"


@contextlib.contextmanager
def lease_gpus(count: int, total: int, lease_dir: str | Path = LEASE_DIR) -> Iterator[str]:
    """Hold ``count`` of this machine's ``total`` GPU ids; yields them as ``"0,1,..."``.

    One lock file per id (``gpu<i>.lock``, ``flock``, released when the holder exits
    or dies). Refuses in one line when fewer than ``count`` ids are free (another
    run holds them: give Snakemake ``--resources gpu=<GPUs of the machine>``).
    """
    lease_dir = Path(lease_dir)
    lease_dir.mkdir(parents=True, exist_ok=True)
    held: list[tuple[int, int]] = []
    try:
        for gpu in range(total):
            if len(held) == count:
                break
            fd = os.open(lease_dir / f"gpu{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append((gpu, fd))
        if len(held) < count:
            raise RuntimeError(f"engine verl: needs {count} GPUs, only {len(held)} of this "
                               f"machine's {total} are not leased by another run "
                               f"({lease_dir}); give Snakemake --resources gpu=<GPUs of the "
                               f"machine> ({GUIDE})")
        yield ",".join(str(gpu) for gpu, _ in held)
    finally:
        for _, fd in held:
            os.close(fd)  # closing the descriptor releases its flock


def token_budget(training: dict[str, Any]) -> int:
    """Tokens per GPU of one dynamic micro-batch (``ppo_max_token_len_per_gpu``).

    ``training.verl.max_token_len_per_gpu``, or by default one longest sequence:
    ``max_prompt_length + max_new_tokens``. A budget below that cannot hold a
    full-length response, which verl refuses mid-run; refused here instead.
    """
    verl = training["verl"]
    longest = verl["max_prompt_length"] + training["max_new_tokens"]
    budget = verl.get("max_token_len_per_gpu") or longest
    if budget < longest:
        raise ValueError(f"training.verl.max_token_len_per_gpu: {budget} is below one longest "
                         f"sequence (max_prompt_length + max_new_tokens = {longest})")
    return budget


def logits_bytes(tokens: int, vocab_size: int, bytes_per_element: int = 2) -> int:
    """Bytes of one micro-batch's logits: tokens x vocabulary x bytes per element."""
    return tokens * vocab_size * bytes_per_element

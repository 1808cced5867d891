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
   evaluation temperature / top_p) and the score is its
   ``val-core/val/reward/mean@1`` (the math-verify reward);
3. the ranks keep the best m, which becomes the anchor; every candidate is
   appended to ``<default_local_dir>/effopd_search.csv``; when verl saved a
   checkpoint this step (it saves before ``on_step_end``) it is saved again
   with the post-search weights, and the anchor shards are stored beside it
   (``effopd_anchor_world_size_W_rank_R.pt``); a resumed run loads them.

What ran: the worker-side arithmetic on CPU FSDP (tests/test_verl_effopd.py),
the registration with verl's registry and worker class (tests/on_verl/).
What never ran: this trainer on GPUs -- the Ray workers, the rollout push,
``_validate`` as the score, the re-save. Treat it as unverified until a GPU
run checks it.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

from verl.single_controller.base.decorator import Dispatch, register
from verl.trainer.ppo.utils import Role
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.workers.engine_workers import ActorRolloutRefWorker

from effopd.integrations import verl_effopd
from effopd.training.extrapolation import SearchRecord, is_power_of_two, search_multipliers

SEARCH_FILE = "effopd_search.csv"
SEARCH_COLUMNS = ["step", "iteration", "multiplier", "score", "accepted"]
VAL_SCORE_KEY = "val-core/val/reward/mean@1"  # data_source "val" (write_verl_parquet)


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
    """verl's synchronous trainer plus EffOPD's line search in ``on_step_end``."""

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

    def _score(self, multiplier: float) -> float:
        self.actor_rollout_wg.effopd_place(multiplier)
        self.checkpoint_manager.update_weights(self.global_steps)
        metrics = self._validate()
        self.checkpoint_manager.sleep_replicas()
        if VAL_SCORE_KEY not in metrics:
            raise KeyError(f"EffOPD: verl's validation gave no {VAL_SCORE_KEY!r}; got "
                           f"{sorted(metrics)[:8]}")
        return float(metrics[VAL_SCORE_KEY])

    def on_step_end(self):
        step = self.global_steps
        if is_power_of_two(step):
            started = time.perf_counter()
            self.actor_rollout_wg.effopd_begin()
            records, best = search_multipliers(
                self._score, step, max_iterations=int(self._effopd("max_iterations", 5)),
                initial_factor=float(self._effopd("initial_factor", 2.0)))
            self.actor_rollout_wg.effopd_finish(best)
            append_search_log(Path(self.config.trainer.default_local_dir) / SEARCH_FILE,
                              records)
            if os.path.isdir(self._actor_dir(step)):  # verl saved before on_step_end
                self._save_checkpoint()  # again: the checkpoint holds the post-search weights
            pending = getattr(self, "_pending_sync_metrics", None) or {}
            pending["timing_s/effopd_search"] = time.perf_counter() - started
            self._pending_sync_metrics = pending
        if os.path.isdir(self._actor_dir(step)):  # every checkpoint carries the anchor
            self.actor_rollout_wg.effopd_save_anchor(self._actor_dir(step))
        super().on_step_end()


def append_search_log(path: Path, records: list[SearchRecord]) -> None:
    """Append the records to the search log (header on first write)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SEARCH_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(r.as_row() for r in records)

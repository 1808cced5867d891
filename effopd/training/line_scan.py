"""The line scan: why EffOPD's extrapolation is accepted or not (issue 31).

For one OPD run with checkpoints at EffOPD's search steps t = 1, 2, 4, 8, ... (the dense
early grid, ``training.save_powers_of_two``), at each t:

1. the anchor theta_a is the run's weights at the previous search step (the base student
   before step 1), as EffOPD's anchor is while every extrapolation is rejected;
2. d = theta_t - theta_a over the transformer-block weights (the tensors EffOPD moves,
   :func:`effopd.training.contract.block_parameters`); every other tensor is theta_t's;
3. for each multiplier m the candidate theta_a + m d (float32: m = 0 is the anchor,
   m = 1 the run's own weights, EffOPD's candidates are m = 3, 5, ...) is scored twice:

   - ``val_acc``: EffOPD's own search score, the mean 0/1 accuracy on the validation
     problems with one sample each, drawn with the search seed of step t (the same
     samples' randomness for every m: common random numbers);
   - ``reverse_kl``: the batch per-token reverse KL, the mean over response tokens of
     log p_cand(y_t) - log p_teacher(y_t) on the responses the candidate samples for
     step t + 1's training prompts (:meth:`effopd.training.trainer.Trainer.batch_reverse_kl`):
     the objective OPD descends, smooth where a 64-problem accuracy is not.

The scan reads checkpoints and writes one row per (t, m); it never trains.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForCausalLM

from effopd.tables import RUN_KEY
from effopd.training.contract import block_parameters, identified, search_seed
from effopd.training.extrapolation import is_search_step, move_to, snapshot

log = logging.getLogger(__name__)

COLUMNS = [*RUN_KEY, "lr", "step", "anchor_step", "multiplier", "val_acc", "reverse_kl"]


def scan_steps(steps: Sequence[int]) -> list[tuple[int, int]]:
    """(anchor step, step) of every search step (powers of two) among a run's checkpoint
    ``steps``; the anchor is the previous search step, 0 (the base) for step 1. A search
    step whose anchor has no checkpoint is left out."""
    have = set(steps) | {0}
    searched = sorted(s for s in steps if is_search_step(s, "powers_of_two"))
    pairs = [(previous, step) for previous, step in zip([0, *searched], searched, strict=False)]
    return [(anchor, step) for anchor, step in pairs if anchor in have]


def block_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    """The transformer-block weights of a checkpoint, float32."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return snapshot(block_parameters(model))


def line_scan(trainer: Any, base_dir: str | Path, checkpoints: dict[int, Path],
              multipliers: Sequence[float], run: tuple[str, int]) -> list[dict[str, Any]]:
    """The scan of the module docstring over the run's ``checkpoints`` (step -> directory),
    with ``trainer`` (:class:`effopd.training.trainer.Trainer` of the run's spec: its
    policy, teacher, validation set and training prompts); rows of :data:`COLUMNS`."""
    rows = []
    targets = scan_steps(sorted(checkpoints))
    for anchor_step, step in tqdm(targets, desc="line scan", mininterval=5):
        anchor = block_weights(checkpoints[anchor_step] if anchor_step else base_dir)
        model = AutoModelForCausalLM.from_pretrained(str(checkpoints[step]),
                                                     dtype=torch.float32)
        trainer.policy.load_state_dict(model.state_dict())
        params = block_parameters(trainer.policy)
        current = snapshot(params)
        direction = {name: current[name] - anchor[name] for name in params}
        for multiplier in multipliers:
            move_to(params, anchor, direction, float(multiplier), current)
            val_acc = trainer.validation_score(search_seed(trainer.seed, step))
            reverse_kl = trainer.batch_reverse_kl(step + 1)
            log.info("step %d, m = %g: val_acc %.4f, reverse_kl %.4f", step, multiplier,
                     val_acc, reverse_kl)
            rows.append({"lr": trainer.spec.lr, "step": step, "anchor_step": anchor_step,
                         "multiplier": float(multiplier), "val_acc": val_acc,
                         "reverse_kl": reverse_kl})
    return identified(rows, *run)

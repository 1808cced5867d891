"""The engines' neutral contract: what every training engine writes and draws alike.

No engine owns this module; the local trainer (:mod:`effopd.training.trainer`),
the TRL engine (:mod:`effopd.integrations.trl_engine`,
:mod:`effopd.integrations.trl`) and the verl engine
(:mod:`effopd.integrations.verl_engine`, :mod:`effopd.integrations.verl_plugin`)
all import it, so a run reads the same whichever engine made it:

- **log** ``log.csv``: one row per optimizer step, :data:`LOG_COLUMNS`;
- **search** ``search.csv``: one row per line-search trial, :data:`SEARCH_COLUMNS`;
- **index** ``checkpoints.csv``: one row per checkpoint, :data:`INDEX_COLUMNS`;

  each starting with the run's identity, :data:`effopd.tables.RUN_KEY` (method and
  training seed, filled by :func:`identified`), which the index hands on to every
  file the run's analyses write;
- **step seed** :func:`step_seed`: the randomness of step ``step`` of seed ``seed``
  (``seed * 1_000_003 + step``), and the **search seed** :func:`search_seed`, the
  step seed plus :data:`SEARCH_SEED_OFFSET`, with which EffOPD's validation
  samples are drawn;
- **block parameters** :func:`block_parameters`: the tensors EffOPD extrapolates
  (the rule of :mod:`effopd.models.names`);
- **save steps** :func:`save_steps`: the shared grid plus EffOPD's search steps;
- **CPU time** :func:`process_cpu_s`: user + system seconds of the process and its
  finished children.

Rows are written with :func:`effopd.io.write_rows`.
"""

from __future__ import annotations

import os
from typing import Any

from effopd.config import block_defaults
from effopd.models.names import is_block_parameter
from effopd.tables import RUN_KEY
from effopd.training.extrapolation import is_search_step
from effopd.training.schedule import grid_steps

METHODS = ("opd", "rl", "effopd")
LOG_COLUMNS = [*RUN_KEY, "step", "wall_s", "search_s", "loss", "reverse_kl", "batch_accuracy",
               "response_tokens", "lr", "prompts", "responses", "val_responses", "val_tokens",
               "cpu_s"]
SEARCH_COLUMNS = [*RUN_KEY, "step", "iteration", "multiplier", "score", "accepted"]
INDEX_COLUMNS = [*RUN_KEY, "step", "path", "wall_s"]

STEP_SEED_STRIDE = 1_000_003  # > any step: (seed, step) -> one seed
SEARCH_SEED_OFFSET = 500_009  # the search's validation samples: a seed no step draws with


def identified(rows: list[dict[str, Any]], method: str, seed: int) -> list[dict[str, Any]]:
    """``rows`` with the run's identity: ``method`` and the training ``seed`` first."""
    return [{"method": method, "seed": seed, **row} for row in rows]


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step`` of run seed ``seed``: ``seed * 1_000_003 + step``."""
    return seed * STEP_SEED_STRIDE + step


def search_seed(seed: int, step: int) -> int:
    """The seed of the line search after step ``step``: the step seed + 500_009."""
    return step_seed(seed, step) + SEARCH_SEED_OFFSET


def block_parameters(model: Any) -> dict[str, Any]:
    """The transformer-block parameters (attention, MLP, in-block norms) by name."""
    return {name: param for name, param in model.named_parameters()
            if is_block_parameter(name)}


def save_steps(training: dict[str, Any], method: str) -> list[int]:
    """Checkpoint steps: the shared grid (:func:`grid_steps`); for EffOPD also every
    search step (:func:`is_search_step`: the steps right after a line search)."""
    steps = set(grid_steps(training))
    if method == "effopd":
        effopd = block_defaults("training", training)["effopd"]
        steps |= {s for s in range(1, training["steps"] + 1)
                  if is_search_step(s, effopd["schedule"], effopd["search_every"])}
    return sorted(steps)


def group_size(training: dict[str, Any], method: str) -> int:
    """Responses sampled per prompt: ``training.rl.group_size`` (schema default) for RL;
    1 for OPD and EffOPD, whose loss needs one response per prompt (the schema's
    ``training.opd`` has no group size)."""
    if method == "rl":
        return int(block_defaults("training", training)["rl"]["group_size"])
    return 1


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended
    (the grading workers): the compute a step used, whatever else shares the cores."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system

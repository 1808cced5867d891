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
- **per-method knobs** :func:`per_method` and :func:`group_size`: the algorithm's block
  (:mod:`effopd.methods`: ``training.opd`` or ``training.rl``);
- **run request** :class:`RunRequest`: what every engine's ``train(run)`` takes (the
  command line dispatches on ``training.engine`` with it);
- **CPU time** :func:`process_cpu_s`: user + system seconds of the process and its
  finished children.

Rows are written with :func:`effopd.io.write_rows`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effopd.config import block_defaults
from effopd.methods import Algorithm, algorithm_named
from effopd.models.names import is_block_parameter
from effopd.tables import RUN_KEY
from effopd.training.extrapolation import is_search_step
from effopd.training.schedule import grid_steps

LOG_COLUMNS = [*RUN_KEY, "step", "wall_s", "search_s", "loss", "reverse_kl", "batch_accuracy",
               "response_tokens", "lr", "prompts", "responses", "val_responses", "val_tokens",
               "cpu_s"]
SEARCH_COLUMNS = [*RUN_KEY, "step", "iteration", "multiplier", "score", "accepted"]
INDEX_COLUMNS = [*RUN_KEY, "step", "path", "wall_s"]

STEP_SEED_STRIDE = 1_000_003  # > any step: (seed, step) -> one seed
SEARCH_SEED_OFFSET = 500_009  # the search's validation samples: a seed no step draws with


@dataclass(frozen=True)
class RunRequest:
    """One training run, as every engine takes it (``train(run)`` of
    :mod:`effopd.training.trainer`, :mod:`effopd.integrations.trl_engine` and
    :mod:`effopd.integrations.verl_engine`): the algorithm and seed, the config's
    blocks, the inputs, and the contract's three outputs. ``run_name`` is the DAG's
    method (the ``method`` column of every output). ``stop_after`` ends the run after
    that step; ``fresh`` discards checkpoints another run made in ``run_dir``. An
    engine that cannot honour one of them refuses it with :func:`refuse_unsupported`."""

    algorithm: str
    seed: int
    training: dict[str, Any]
    grading: dict[str, Any]
    prompt: dict[str, Any]
    student: str | Path
    teacher: str | Path | None
    train: str | Path
    val: str | Path | None
    run_dir: str | Path
    log_csv: str | Path
    search_csv: str | Path
    index_csv: str | Path
    run_name: str
    stop_after: int | None = None
    fresh: bool = False
    device: str | None = None


def refuse_unsupported(run: RunRequest, engine: str, *, stop_after: bool = True,
                       fresh: bool = True) -> None:
    """One line naming the engine when ``run`` asks for what it cannot do (``stop_after``
    / ``fresh`` False: the engine does not support that option)."""
    asked = [flag for flag, supported, value in (("--stop-after", stop_after, run.stop_after),
                                                 ("--fresh", fresh, run.fresh))
             if not supported and value not in (None, False)]
    if asked:
        raise ValueError(f"training engine {engine}: {' and '.join(asked)} not supported "
                         "(it resumes from whatever its run directory holds; delete the run "
                         "directory to start afresh)")


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


def save_steps(training: dict[str, Any], algorithm: Algorithm | str) -> list[int]:
    """Checkpoint steps: the shared grid (:func:`grid_steps`); for an algorithm that
    searches (EffOPD) also every search step (:func:`is_search_step`: the steps right
    after a line search)."""
    steps = set(grid_steps(training))
    if algorithm_named(algorithm).searches:
        effopd = block_defaults("training", training)["effopd"]
        steps |= {s for s in range(1, training["steps"] + 1)
                  if is_search_step(s, effopd["schedule"], effopd["search_every"])}
    return sorted(steps)


def group_size(training: dict[str, Any], algorithm: Algorithm | str) -> int:
    """Responses sampled per prompt: the ``group_size`` of the algorithm's block
    (``training.rl.group_size``, schema default, for GRPO); 1 for a block without one
    (``training.opd``: OPD and EffOPD's loss needs one response per prompt)."""
    return int(per_method(training, algorithm).get("group_size", 1))


def per_method(training: dict[str, Any], algorithm: Algorithm | str) -> dict[str, Any]:
    """The algorithm's own knobs: ``training.<block>`` with the schema's defaults
    (``training.opd`` for OPD and EffOPD, ``training.rl`` for RL)."""
    return block_defaults("training", training)[algorithm_named(algorithm).block]


def process_cpu_s() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended
    (the grading workers): the compute a step used, whatever else shares the cores."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system

"""EffOPD's greedy line search along the update direction (SPEC section 3).

Engine-agnostic: it sees a mapping of named parameter tensors (modified in
place) and a callback that scores the current weights, so the same code runs
inside the local trainer and inside a verl worker that gathers full
parameters.

After the optimizer step of every step whose number is a power of two:

1. ``s_best = score(theta)``.
2. ``f = 2``; up to ``max_iterations`` times: ``theta' = theta + f (theta - theta_a)``
   with the anchor ``theta_a`` fixed. If ``score(theta') > s_best`` (strictly),
   accept (``theta = theta'``, ``s_best = score``, ``f = f / (1 + f)``), else
   restore the best weights and stop.
3. The anchor moves to the chosen weights: ``theta_a = theta``.

With ``d = theta_t - theta_a`` the accepted candidates are
``theta_a + m d`` with ``m = 3, 5, 7, 9, 11`` (each acceptance adds ``2 d``).
All arithmetic is float32 whatever the parameters' dtype; optimizer moments
and the learning-rate schedule are not touched (the caller does not pass them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch

from effopd.config import block_defaults
from effopd.models.names import is_block_parameter


@dataclass(frozen=True)
class SearchRecord:
    """One scored point of a line search: ``multiplier`` is m in ``theta_a + m d``."""

    step: int
    iteration: int
    multiplier: float
    score: float
    accepted: bool

    def as_row(self) -> dict:
        return asdict(self)


# Which parameters move. "blocks": every tensor of a transformer block (model.layers.N.*,
# effopd.models.names),
# what the local trainer does. "authors": the EffOPD authors' name rule, a parameter whose
# name contains one of AUTHORS_KEYS: in Qwen3 that moves post_attention_layernorm, q_norm
# and k_norm (their names contain "attention" / sit under self_attn) and leaves
# input_layernorm, the embeddings, the head and the final norm alone.
AUTHORS_KEYS = ("attn", "self_attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj",
                "mlp", "feed_forward", "ffn", "gate_proj", "up_proj", "down_proj")
PARAM_RULES = ("blocks", "authors")


def is_extrapolated(name: str, rule: str = "blocks") -> bool:
    """Whether EffOPD moves parameter ``name`` under ``rule`` (see :data:`PARAM_RULES`)."""
    if rule == "blocks":
        return is_block_parameter(name)
    if rule == "authors":
        return any(key in name for key in AUTHORS_KEYS)
    raise ValueError(f"unknown parameter rule {rule!r}; expected one of {PARAM_RULES}")


# The search's knobs as the schema's training.effopd block sets them by default (read
# once: every default below and in the engines' plug-ins is one of these).
_SEARCH = block_defaults("training")["effopd"]
MAX_ITERATIONS: int = _SEARCH["max_iterations"]
INITIAL_FACTOR: float = _SEARCH["initial_factor"]
SCHEDULE: str = _SEARCH["schedule"]
SEARCH_EVERY: int = _SEARCH["search_every"]


def is_power_of_two(step: int) -> bool:
    """True for 1, 2, 4, 8, ... (the steps after which EffOPD searches)."""
    return step >= 1 and step & (step - 1) == 0


SCHEDULES = ("powers_of_two", "every_k")


def is_search_step(step: int, schedule: str = SCHEDULE, every: int = SEARCH_EVERY) -> bool:
    """Whether EffOPD searches after ``step``: the authors' schedule searches after steps
    1, 2, 4, 8, ... (``powers_of_two``); the ablation's ``every_k`` after steps
    k, 2k, 3k, ... (``every`` = k)."""
    if schedule == "powers_of_two":
        return is_power_of_two(step)
    if schedule == "every_k":
        return step >= 1 and step % every == 0
    raise ValueError(f"training.effopd.schedule: {schedule!r} is not one of {SCHEDULES}")


def require_authors_search(effopd: Mapping[str, object], engine: str) -> None:
    """Refuse the ablation's search knobs (schedule every_k, a validation subset) on an
    engine that runs the authors' search only (verl, TRL)."""
    if effopd.get("schedule", "powers_of_two") != "powers_of_two" \
            or effopd.get("validation_size") is not None:
        raise ValueError(f"training.effopd.schedule / validation_size: engine {engine} runs "
                         "the authors' search (powers of two, the whole validation set); "
                         "the ablation's variants need engine local")


def snapshot(params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 copies of ``params`` (used for anchors and for restoring)."""
    return {name: tensor.detach().to(torch.float32).clone() for name, tensor in params.items()}


@torch.no_grad()
def _assign(params: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in params.items():
        tensor.copy_(values[name].to(tensor.dtype))


def search_multipliers(score_at: Callable[[float], float], step: int,
                       max_iterations: int = MAX_ITERATIONS,
                       initial_factor: float = INITIAL_FACTOR
                       ) -> tuple[list[SearchRecord], float]:
    """The greedy search over m in theta_a + m d; return its records and the chosen m.

    ``score_at(m)`` puts the weights at theta_a + m d (d = theta_t - theta_a)
    and scores them; m = 1 (the current weights) is scored first. From
    theta = theta_a + m d, theta' = theta + f (theta - theta_a) = theta_a + m (1 + f) d;
    accept when strictly better (then f = f / (1 + f)), else stop. The caller
    leaves the weights at the returned m.
    """
    best_score = float(score_at(1.0))
    records = [SearchRecord(step, 0, 1.0, best_score, True)]
    factor, multiplier = initial_factor, 1.0
    for iteration in range(1, max_iterations + 1):
        candidate_multiplier = multiplier * (1.0 + factor)
        candidate_score = float(score_at(candidate_multiplier))
        accepted = candidate_score > best_score
        records.append(SearchRecord(step, iteration, candidate_multiplier, candidate_score,
                                    accepted))
        if not accepted:
            break
        best_score, multiplier = candidate_score, candidate_multiplier
        factor = factor / (1.0 + factor)
    return records, multiplier


@torch.no_grad()
def line_search(params: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor],
                score: Callable[[], float], step: int, max_iterations: int = MAX_ITERATIONS,
                initial_factor: float = INITIAL_FACTOR
                ) -> tuple[list[SearchRecord], dict[str, torch.Tensor]]:
    """Run the search on ``params`` in place; return its records and the new anchor.

    ``params`` are the live tensors to move (transformer-block weights only);
    ``anchor`` holds float32 tensors with the same names. The first record
    (iteration 0, multiplier 1) is the score of the weights before the search.
    Candidates are theta_a + m d computed in float32 (:func:`search_multipliers`);
    the weights end at the best one (m = 1 restores theta_t exactly).
    """
    missing = set(params) ^ set(anchor)
    if missing:
        raise ValueError(f"line_search: params and anchor differ in {sorted(missing)[:5]}")
    current = snapshot(params)
    direction = {name: current[name] - anchor[name].to(torch.float32) for name in current}
    placed = [1.0]

    def score_at(multiplier: float) -> float:
        if multiplier != placed[0]:
            move_to(params, anchor, direction, multiplier, current)
            placed[0] = multiplier
        return score()

    records, best = search_multipliers(score_at, step, max_iterations, initial_factor)
    if best != placed[0]:
        move_to(params, anchor, direction, best, current)
    return records, snapshot(params)


@torch.no_grad()
def move_to(params: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor],
            direction: Mapping[str, torch.Tensor], multiplier: float,
            current: Mapping[str, torch.Tensor] | None = None) -> None:
    """Write theta_a + m d into ``params`` (float32 arithmetic); m = 1 writes ``current``."""
    if multiplier == 1.0 and current is not None:
        _assign(params, current)
        return
    _assign(params, {name: anchor[name].to(torch.float32) + multiplier * direction[name]
                     for name in params})

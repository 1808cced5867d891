"""What every engine (local, TRL, verl) reads the same way from the ``training`` block: the
checkpoint grid all methods share, each method's learning rate, and the OPD learning-rate
baselines (torch-free: the Snakefile reads it too).

The learning-rate baselines (``training.lr_baselines``) answer a referee's question about
EffOPD: is it more than a larger step size? Each multiplier m trains OPD as its own DAG
method ``opd-lr<m>x`` (for example ``opd-lr2x``) at lr = m x ``training.lr`` and the
baselines' warm-up, on the same seeds, grid and data order as OPD.
"""

from __future__ import annotations

import re
from typing import Any

LR_BASELINE = re.compile(r"^opd-lr(\d+(?:\.\d+)?)x$")


def grid_steps(training: dict[str, Any]) -> list[int]:
    """The checkpoint grid every method shares: every ``save_every`` steps, the last
    step and, with ``save_powers_of_two``, steps 1, 2, 4, 8, ... (dense early, where
    the curves bend). Evaluated for every method alike, so no method gets extra looks."""
    total, every = training["steps"], training["save_every"]
    steps = set(range(every, total + 1, every)) | {total}
    if training.get("save_powers_of_two", False):
        steps |= {1 << k for k in range(total.bit_length()) if 1 << k <= total}
    return sorted(steps)


def method_lr(training: dict[str, Any], method: str) -> float:
    """The peak learning rate of ``method``: ``training.rl.lr`` for RL when set, else
    ``training.lr``."""
    own = training.get("rl", {}).get("lr") if method == "rl" else None
    return own or training["lr"]


def lr_baseline_name(multiplier: float) -> str:
    """The DAG method of OPD at ``multiplier`` x the default lr: ``opd-lr<m>x`` (m as %g)."""
    return f"opd-lr{multiplier:g}x"


def lr_baselines(training: dict[str, Any]) -> list[str]:
    """The DAG methods of ``training.lr_baselines.multipliers``, in config order (none
    unless OPD itself is trained: they are OPD's baselines)."""
    if "opd" not in training.get("methods", ["opd"]):
        return []
    multipliers = training.get("lr_baselines", {}).get("multipliers", [])
    return [lr_baseline_name(m) for m in multipliers]


def lr_multiplier(method: str) -> float | None:
    """m of an ``opd-lr<m>x`` method; None for any other method."""
    match = LR_BASELINE.match(method)
    return float(match.group(1)) if match else None


def baseline_training(training: dict[str, Any], method: str) -> dict[str, Any]:
    """The training block an ``opd-lr<m>x`` method trains with: ``lr`` = m x
    ``training.lr`` and ``warmup_steps`` = ``lr_baselines.warmup_steps`` (null: OPD's
    own); every other key as OPD's. Any other method: the block unchanged."""
    multiplier = lr_multiplier(method)
    if multiplier is None:
        return training
    warmup = training.get("lr_baselines", {}).get("warmup_steps")
    return {**training, "lr": training["lr"] * multiplier,
            "warmup_steps": training.get("warmup_steps", 0) if warmup is None else warmup}

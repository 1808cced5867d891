"""What every engine (local, TRL, verl) reads the same way from the ``training`` block: the
checkpoint grid all methods share (torch-free: the Snakefile reads it too). Each method's
learning rate is its declaration's (:mod:`effopd.methods`)."""

from __future__ import annotations

from typing import Any


def grid_steps(training: dict[str, Any]) -> list[int]:
    """The checkpoint grid every method shares: every ``save_every`` steps, the last
    step and, with ``save_powers_of_two``, steps 1, 2, 4, 8, ... (dense early, where
    the curves bend). Evaluated for every method alike, so no method gets extra looks."""
    total, every = training["steps"], training["save_every"]
    steps = set(range(every, total + 1, every)) | {total}
    if training.get("save_powers_of_two", False):
        steps |= {1 << k for k in range(total.bit_length()) if 1 << k <= total}
    return sorted(steps)

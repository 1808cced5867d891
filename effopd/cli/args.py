"""Argument helpers shared by every ``effopd`` subcommand (top floor, :mod:`effopd.cli`).

``json_arg`` parses the config blocks the DAG passes as JSON, ``methods_arg`` the
declared methods, ``limit_arg`` the
``--limit`` of the scoring commands, and ``set_threads`` applies a rule's
``threads`` to torch.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

AddCommand = Callable[[str, Callable[[argparse.Namespace], None], str], Any]


def json_arg(text: str) -> Any:
    """argparse type: a JSON value, with the parse error and the text's start in the message."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}: {text[:200]!r}") from err


def methods_arg(text: str) -> Any:
    """argparse type of ``--methods``: the declared methods as JSON rows
    (:meth:`effopd.methods.Method.as_json`, the DAG's ``methods_json``), by name."""
    from effopd.methods import methods_from_json

    try:
        return methods_from_json(json_arg(text))
    except (KeyError, TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"--methods: not a list of declared methods: "
                                         f"{err}") from err


METHODS_HELP = ("every declared method (JSON rows, effopd/methods.py): their labels, roles "
                "and learning rates (default: the three main methods only)")


def set_threads(count: int | None) -> None:
    """Set torch's intra-op threads (the rule's ``threads``); None leaves torch's default.
    A count below 1 or above 4 x the machine's CPUs is refused, naming the flag."""
    from effopd.errors import InputError

    most = 4 * (os.cpu_count() or 1)
    if count is not None and not 1 <= count <= most:
        raise InputError(f"--threads {count}: expected 1 to {most} (4 x this machine's CPUs)")
    if count:
        import torch

        torch.set_num_threads(count)


def limit_arg(text: str) -> int | None:
    """argparse type of ``--limit``: a positive integer, or ``all`` (the config's null)."""
    if text.lower() in ("all", "none", "null"):
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--limit must be a positive integer or 'all', "
                                         f"got {text!r}")
    return value

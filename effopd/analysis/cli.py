"""Subcommands of ``effopd`` for the checkpoint-series analyses (``effopd analyze`` etc.)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

AddCommand = Callable[[str, Callable[[argparse.Namespace], None], str], Any]


def register_analysis_commands(add: AddCommand) -> None:
    """Register the analysis subcommands with the main parser's ``add`` helper."""

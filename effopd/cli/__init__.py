"""The ``effopd`` command line (top floor): one subcommand per workflow step.

Nothing in the package imports this one; it imports everything below it.

- :mod:`.main`      the parser, the pipeline subcommands and :func:`main` (the
                    ``effopd`` console script, ``python -m effopd.cli``)
- :mod:`.analysis`  the checkpoint-series subcommands (``analyze``, ``evaluate-*``,
                    ``tabulate-analysis``, ``tabulate-claims``, ``plot-analysis``)
- :mod:`.args`      argument helpers every subcommand shares (``json_arg``,
                    ``limit_arg``, ``set_threads``)
"""

from __future__ import annotations

from effopd.cli.main import build_parser, error_line, main

__all__ = ["build_parser", "error_line", "main"]

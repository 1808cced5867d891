"""The project's error types (ground floor): the command line turns each into one line.

Every fault of the input (a file, a key, a value) that a user must act on is
raised as an :class:`EffopdError` whose message names the file or key and the
fault; ``effopd`` prints it as one line and exits with a non-zero code.
"""

from __future__ import annotations


class EffopdError(Exception):
    """A fault of the input that the user must fix; the message names file/key and fault."""


class CheckpointError(EffopdError, ValueError):
    """A checkpoint file that is missing, truncated, corrupt, or differs from its manifest."""


class StaleRunError(EffopdError, ValueError):
    """A run directory made by a different run (config, models, data or code version)."""


class InputError(EffopdError, ValueError):
    """A malformed or empty input file (benchmark, data, records)."""

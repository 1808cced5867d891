"""Parameter names of the Qwen3 family: which tensors sit inside a transformer block.

The one block-parameter rule of the package. A block parameter is named
``[model.]layers.<N>.<rest>``: the engines move exactly these in EffOPD's line
search (:func:`is_block_parameter`, through
:func:`effopd.training.contract.block_parameters` and
:func:`effopd.training.extrapolation.is_extrapolated`), and the analyses parse
the same ``layers.<N>.`` part to place a tensor in its layer
(:func:`effopd.analysis.checkpoint_io.parse_param_name`, which also accepts a
wrapper's prefix such as ``base_model.model.``).
"""

from __future__ import annotations

import re

# The layer part of a block parameter's name; group 1 is the layer index.
LAYER = r"layers\.(\d+)\."
# A parameter of a transformer block, as the engines name them (``model.layers.3.mlp...``).
BLOCK_PREFIX = re.compile(rf"^(?:model\.)?{LAYER}")


def is_block_parameter(name: str) -> bool:
    """True for ``layers.N.*`` and ``model.layers.N.*`` (attention, MLP, in-block norms)."""
    return bool(BLOCK_PREFIX.match(name))

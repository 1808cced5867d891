"""Defaults of the checkpoint-series analyses, read from the config schema's
``analysis`` block (the one place they are written).

Torch-free on purpose: the command line reads these defaults when it builds
its parser without importing the numerical stack.
"""

from __future__ import annotations

from effopd.config import block_defaults

_ANALYSIS = block_defaults("analysis")

SPECTRA_KS = tuple(_ANALYSIS["spectra_ks"])
ALIGNMENT_KS = tuple(_ANALYSIS["alignment_ks"])
SCALING_ALPHAS = tuple(float(alpha) for alpha in _ANALYSIS["scaling_alphas"])
EARLY_FRACTION = float(_ANALYSIS["early_fraction"])
WINDOW_SIZE = _ANALYSIS["window_size"]
WINDOW_STRIDE = _ANALYSIS["window_stride"]
RANK_KS = tuple(_ANALYSIS["rank_ks"])
EVAL_LIMIT = _ANALYSIS["eval_limit"]
EVAL_N = _ANALYSIS["eval_n"]
PLOT_K = _ANALYSIS["plot_k"]
PROJECTION_MAX_TOKENS = _ANALYSIS["projection_max_tokens"]

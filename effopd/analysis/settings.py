"""Defaults of the checkpoint-series analyses.

Torch-free on purpose: the command line reads these defaults when it builds
its parser without importing the numerical stack. The config schema's
``analysis`` block states the same defaults (tests/test_analysis_pipeline.py
checks that the two agree).
"""

from __future__ import annotations

SPECTRA_KS = (1, 2, 4, 8, 16, 32, 64)
ALIGNMENT_KS = (1, 2, 4, 8, 16)
SCALING_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
EARLY_FRACTION = 0.1
WINDOW_SIZE = 4
WINDOW_STRIDE = 2
RANK_KS = (1, 4, 16)
EVAL_LIMIT = 64
EVAL_N = 1

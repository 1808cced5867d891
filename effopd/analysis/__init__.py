"""Analyses of a checkpoint series (SPEC section 4): library functions returning numbers or tables.

- :mod:`.checkpoint_io`  streaming safetensors reader and checkpoint writer, parameter names
- :mod:`.spectra`        singular values, effective/stable rank, energy shares, top-k subspaces
- :mod:`.subspace`       subspace overlap, principal angles, |cos| of vectors
- :mod:`.updates`        per-tensor update norms, per-layer / per-module allocation
- :mod:`.spectra_table`  per-matrix spectra of one checkpoint's update
- :mod:`.alignment`      overlap of each checkpoint's update with the final update
- :mod:`.series`         spectra + alignment of a series in one pass (one eigh per matrix)
- :mod:`.interventions`  scaled, injected and rank-k checkpoints for the accuracy analyses
- :mod:`.embedding_shift` cosine of base vs trained embedding rows, 2-D PCA picture
- :mod:`.synthetic`      random Qwen3 checkpoints with planted updates (tests, benchmark)
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    'aggregate_update_norms': 'updates',
    'alignment_table': 'alignment',
    'block_matrix_names': 'checkpoint_io',
    'effective_rank': 'spectra',
    'embedding_cosine': 'embedding_shift',
    'embedding_cosine_summary': 'embedding_shift',
    'embedding_projection': 'embedding_shift',
    'energy_share': 'spectra',
    'gram_error_bound': 'spectra',
    'injected_update': 'interventions',
    'is_attention': 'interventions',
    'is_block_weight': 'checkpoint_io',
    'is_embedding': 'interventions',
    'is_mlp': 'interventions',
    'iter_tensor_pairs': 'checkpoint_io',
    'iter_update_tensors': 'checkpoint_io',
    'LayerWindow': 'interventions',
    'list_tensor_names': 'checkpoint_io',
    'num_layers': 'interventions',
    'open_checkpoint': 'checkpoint_io',
    'ParamInfo': 'checkpoint_io',
    'parse_param_name': 'checkpoint_io',
    'principal_angles': 'subspace',
    'random_overlap': 'subspace',
    'rank_k_approximation': 'spectra',
    'rank_k_norm_ratio': 'spectra',
    'rank_k_rescaled': 'interventions',
    'read_tensor': 'checkpoint_io',
    'resolve_device': 'device',
    'scaled_update': 'interventions',
    'series_tables': 'series',
    'singular_values': 'spectra',
    'sliding_windows': 'interventions',
    'spectra_table': 'spectra_table',
    'spectrum_and_subspaces': 'spectra',
    'stable_rank': 'spectra',
    'subspace_overlap': 'subspace',
    'top1_abs_cos': 'subspace',
    'topk_subspaces': 'spectra',
    'total_update_norm': 'updates',
    'update_norm_table': 'updates',
    'update_size_series': 'updates',
    'write_modified_checkpoint': 'checkpoint_io',
}

__all__ = [
    "aggregate_update_norms", "alignment_table", "block_matrix_names", "effective_rank",
    "embedding_cosine", "embedding_cosine_summary", "embedding_projection", "energy_share",
    "gram_error_bound", "injected_update", "is_attention", "is_block_weight", "is_embedding",
    "is_mlp", "iter_tensor_pairs", "iter_update_tensors", "LayerWindow", "list_tensor_names",
    "long_by_k", "num_layers", "open_checkpoint", "ParamInfo", "parse_param_name",
    "principal_angles", "random_overlap", "rank_k_approximation", "rank_k_norm_ratio",
    "rank_k_rescaled", "read_tensor", "resolve_device", "scaled_update", "series_tables",
    "singular_values", "sliding_windows", "spectra_table", "spectrum_and_subspaces", "stable_rank",
    "subspace_overlap", "top1_abs_cos", "topk_subspaces", "total_update_norm", "update_norm_table",
    "update_size_series", "write_modified_checkpoint",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its submodule on first use (PEP 562)."""
    if name in _SOURCES:
        return getattr(importlib.import_module(f"effopd.analysis.{_SOURCES[name]}"), name)
    raise AttributeError(f"module 'effopd.analysis' has no attribute {name!r}")

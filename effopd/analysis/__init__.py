"""Analyses of a checkpoint series (SPEC section 4), floor 2: library functions that
return numbers or tables. They import the ground floor and data / models below;
never the reports, plots or command line above (tests/test_floors.py).

By job:

- :mod:`.series`          the series: discovery (index or directories), steps, the
                          early checkpoint, verification before reading (torch-free)
- :mod:`.weight_pass`     ONE streaming pass over the checkpoints: norms, allocation,
                          spectra, alignment, embedding shift (``effopd analyze``)
- :mod:`.scoring`         the scoring service: settings, candidates, cache, cast check
- :mod:`.recipes`         the intervention recipes: scaling, modules, rank-k
- :mod:`.generated_tokens` the token ids a checkpoint generated

The formulas, each defined once:

- :mod:`.spectra`         singular values, effective/stable rank, energy shares,
                          spectrum_row, top-k subspaces
- :mod:`.subspace`        subspace overlap, principal angles, |cos| of vectors
- :mod:`.alignment`       overlaps of an update's subspaces with the final update's
- :mod:`.updates`         per-tensor update norms, update share, per-layer / module
                          allocation, update sizes
- :mod:`.embedding_shift` cosine of base vs trained embedding rows, 2-D PCA picture
- :mod:`.interventions`   scaled, injected and rank-k checkpoints

Input, output and test data:

- :mod:`.checkpoint_io`   streaming safetensors reader and checkpoint writer, names
- :mod:`.settings`        the analyses' defaults (torch-free)
- :mod:`.synthetic`       random Qwen3 checkpoints with planted updates (tests, benchmark)
"""

from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    'aggregate_update_norms': 'effopd.analysis.updates',
    'alignment_table': 'effopd.analysis.weight_pass',
    'block_matrix_names': 'effopd.analysis.checkpoint_io',
    'effective_rank': 'effopd.analysis.spectra',
    'embedding_cosine': 'effopd.analysis.embedding_shift',
    'embedding_cosine_summary': 'effopd.analysis.embedding_shift',
    'embedding_projection': 'effopd.analysis.embedding_shift',
    'energy_share': 'effopd.analysis.spectra',
    'gram_error_bound': 'effopd.analysis.spectra',
    'injected_update': 'effopd.analysis.interventions',
    'is_attention': 'effopd.analysis.interventions',
    'is_block_weight': 'effopd.analysis.checkpoint_io',
    'is_embedding': 'effopd.analysis.interventions',
    'is_mlp': 'effopd.analysis.interventions',
    'iter_tensor_pairs': 'effopd.analysis.checkpoint_io',
    'iter_update_tensors': 'effopd.analysis.checkpoint_io',
    'LayerWindow': 'effopd.analysis.interventions',
    'list_tensor_names': 'effopd.analysis.checkpoint_io',
    'num_layers': 'effopd.analysis.interventions',
    'open_checkpoint': 'effopd.analysis.checkpoint_io',
    'ParamInfo': 'effopd.analysis.checkpoint_io',
    'parse_param_name': 'effopd.analysis.checkpoint_io',
    'principal_angles': 'effopd.analysis.subspace',
    'random_overlap': 'effopd.analysis.subspace',
    'rank_k_approximation': 'effopd.analysis.spectra',
    'rank_k_norm_ratio': 'effopd.analysis.spectra',
    'rank_k_rescaled': 'effopd.analysis.interventions',
    'read_tensor': 'effopd.analysis.checkpoint_io',
    'resolve_device': 'effopd.device',
    'scaled_update': 'effopd.analysis.interventions',
    'series_tables': 'effopd.analysis.weight_pass',
    'singular_values': 'effopd.analysis.spectra',
    'sliding_windows': 'effopd.analysis.interventions',
    'spectra_table': 'effopd.analysis.weight_pass',
    'spectrum_and_subspaces': 'effopd.analysis.spectra',
    'stable_rank': 'effopd.analysis.spectra',
    'subspace_overlap': 'effopd.analysis.subspace',
    'top1_abs_cos': 'effopd.analysis.subspace',
    'topk_subspaces': 'effopd.analysis.spectra',
    'total_update_norm': 'effopd.analysis.updates',
    'update_norm_table': 'effopd.analysis.updates',
    'update_size_series': 'effopd.analysis.updates',
    'write_modified_checkpoint': 'effopd.analysis.checkpoint_io',
}

__all__ = [
    "aggregate_update_norms", "alignment_table", "block_matrix_names", "effective_rank",
    "embedding_cosine", "embedding_cosine_summary", "embedding_projection", "energy_share",
    "gram_error_bound", "injected_update", "is_attention", "is_block_weight", "is_embedding",
    "is_mlp", "iter_tensor_pairs", "iter_update_tensors", "LayerWindow", "list_tensor_names",
    "num_layers", "open_checkpoint", "ParamInfo", "parse_param_name",
    "principal_angles", "random_overlap", "rank_k_approximation", "rank_k_norm_ratio",
    "rank_k_rescaled", "read_tensor", "resolve_device", "scaled_update", "series_tables",
    "singular_values", "sliding_windows", "spectra_table", "spectrum_and_subspaces", "stable_rank",
    "subspace_overlap", "top1_abs_cos", "topk_subspaces", "total_update_norm", "update_norm_table",
    "update_size_series", "write_modified_checkpoint",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its submodule on first use (PEP 562)."""
    if name in _SOURCES:
        return getattr(importlib.import_module(_SOURCES[name]), name)
    raise AttributeError(f"module 'effopd.analysis' has no attribute {name!r}")

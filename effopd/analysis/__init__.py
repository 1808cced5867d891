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

from effopd.analysis.alignment import alignment_table, long_by_k
from effopd.analysis.checkpoint_io import (
    ParamInfo,
    block_matrix_names,
    is_block_weight,
    iter_tensor_pairs,
    iter_update_tensors,
    list_tensor_names,
    open_checkpoint,
    parse_param_name,
    read_tensor,
    write_modified_checkpoint,
)
from effopd.analysis.device import resolve_device
from effopd.analysis.embedding_shift import (
    embedding_cosine,
    embedding_cosine_summary,
    embedding_projection,
)
from effopd.analysis.interventions import (
    LayerWindow,
    injected_update,
    is_attention,
    is_embedding,
    is_mlp,
    num_layers,
    rank_k_rescaled,
    scaled_update,
    sliding_windows,
)
from effopd.analysis.series import series_tables
from effopd.analysis.spectra import (
    effective_rank,
    energy_share,
    gram_error_bound,
    rank_k_approximation,
    rank_k_norm_ratio,
    singular_values,
    spectrum_and_subspaces,
    stable_rank,
    topk_subspaces,
)
from effopd.analysis.spectra_table import spectra_table
from effopd.analysis.subspace import (
    principal_angles,
    random_overlap,
    subspace_overlap,
    top1_abs_cos,
)
from effopd.analysis.updates import (
    aggregate_update_norms,
    total_update_norm,
    update_norm_table,
    update_size_series,
)

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

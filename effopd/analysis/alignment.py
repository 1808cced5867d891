"""Alignment of each checkpoint's update with the final update (SPEC section 4).

For a 2-D block weight, Delta_t = theta_t - theta_0 and Delta_T = theta_T - theta_0
(T the final checkpoint). With U_{t,k}, V_{t,k} the top-k left and right
singular vectors of Delta_t:

    left_overlap_k  = ||U_{t,k}^T U_{T,k}||_F^2 / k,
    right_overlap_k = ||V_{t,k}^T V_{T,k}||_F^2 / k,
    top1_left_abs_cos  = |u_{t,1} . u_{T,1}|,   top1_right_abs_cos = |v_{t,1} . v_{T,1}|.

1 means identical subspaces; a random k-dim subspace of R^n scores k / n.

This module states the formulas on two sets of bases (:func:`alignment_row`);
the streaming over checkpoints (the final update's bases computed once per
tensor, never the full U, S, V of any matrix) is
:mod:`effopd.analysis.weight_pass`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from effopd.analysis.checkpoint_io import CheckpointLike, open_checkpoint
from effopd.analysis.spectra import Subspaces
from effopd.analysis.subspace import subspace_overlap, top1_abs_cos


def checkpoint_labels(ckpt_dirs: Mapping[str, CheckpointLike] | Sequence[CheckpointLike],
                      ) -> dict[str, CheckpointLike]:
    """Label checkpoints: a mapping keeps its keys, a list is labelled by directory name."""
    if isinstance(ckpt_dirs, Mapping):
        return dict(ckpt_dirs)
    labels = {open_checkpoint(c).directory.name: c for c in ckpt_dirs}
    if len(labels) != len(ckpt_dirs):
        raise ValueError("checkpoint directory names are not unique; pass a mapping label -> dir")
    return labels


def alignment_columns(k_list: Sequence[int]) -> list[str]:
    """Names of the overlap columns that :func:`alignment_row` fills, in order."""
    return [*(f"{side}_overlap_k{k}" for k in k_list for side in ("left", "right")),
            "top1_left_abs_cos", "top1_right_abs_cos"]


def alignment_row(current: Subspaces | None, final: Subspaces | None,
                  k_list: Sequence[int]) -> dict[str, float]:
    """Overlap columns for one tensor from the two sets of top-kmax bases.

    ``None`` (a zero update, which has no singular directions) gives NaN
    everywhere; a k wider than the bases gives NaN in its columns.
    """
    row = dict.fromkeys(alignment_columns(k_list), math.nan)
    if current is None or final is None:
        return row
    width = min(current.U.shape[1], final.U.shape[1])
    for k in k_list:
        if k <= width:
            row[f"left_overlap_k{k}"] = subspace_overlap(current.U[:, :k], final.U[:, :k])
            row[f"right_overlap_k{k}"] = subspace_overlap(current.V[:, :k], final.V[:, :k])
    row["top1_left_abs_cos"] = top1_abs_cos(current.U[:, 0], final.U[:, 0])
    row["top1_right_abs_cos"] = top1_abs_cos(current.V[:, 0], final.V[:, 0])
    return row

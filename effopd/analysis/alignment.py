"""Alignment of each checkpoint's update with the final update (SPEC section 4).

For a 2-D block weight, Delta_t = theta_t - theta_0 and Delta_T = theta_T - theta_0
(T the final checkpoint). With U_{t,k}, V_{t,k} the top-k left and right
singular vectors of Delta_t:

    left_overlap_k  = ||U_{t,k}^T U_{T,k}||_F^2 / k,
    right_overlap_k = ||V_{t,k}^T V_{T,k}||_F^2 / k,
    top1_left_abs_cos  = |u_{t,1} . u_{T,1}|,   top1_right_abs_cos = |v_{t,1} . v_{T,1}|.

1 means identical subspaces; a random k-dim subspace of R^n scores k / n.

Streaming: tensors are the outer loop. For one tensor, the final update is
read and reduced to its top-kmax bases (m x kmax and n x kmax) once; then each
checkpoint's update of that tensor is read, reduced the same way and compared.
Memory holds theta_0 of one tensor, one update and the small bases, never the
full U, S, V of any matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from effopd.analysis.checkpoint_io import (
    CheckpointLike,
    block_matrix_names,
    check_same_shape,
    open_checkpoint,
    parse_param_name,
    read_tensor,
)
from effopd.analysis.spectra import Subspaces, topk_subspaces
from effopd.analysis.subspace import subspace_overlap, top1_abs_cos
from effopd.device import DeviceLike, resolve_device

DEFAULT_K_LIST = (1, 2, 4, 8, 16)


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


def _bases(delta: torch.Tensor, kmax: int, method: str) -> Subspaces | None:
    if not bool(delta.any()):
        return None
    return topk_subspaces(delta, min(kmax, *delta.shape), method=method)


def alignment_table(base_dir: CheckpointLike,
                    ckpt_dirs: Mapping[str, CheckpointLike] | Sequence[CheckpointLike],
                    final_dir: CheckpointLike, k_list: Sequence[int] = DEFAULT_K_LIST,
                    names: Iterable[str] | None = None, method: str = "gram",
                    device: DeviceLike = "cpu", progress: bool = False) -> pd.DataFrame:
    """One row per (checkpoint, 2-D block weight): overlaps with the final update's subspaces.

    Columns: checkpoint (label: mapping key or directory name), name, layer,
    module, group, rows, cols, left_overlap_k{k}, right_overlap_k{k} for each k
    in ``k_list``, top1_left_abs_cos, top1_right_abs_cos. A k above
    min(rows, cols), or a zero update (either side), gives NaN. Bases by
    :func:`effopd.analysis.spectra.topk_subspaces` (``method``).
    """
    base = open_checkpoint(base_dir)
    final = open_checkpoint(final_dir)
    labelled = {label: open_checkpoint(c) for label, c in checkpoint_labels(ckpt_dirs).items()}
    names = block_matrix_names(base) if names is None else list(names)
    device = resolve_device(device)
    kmax = max(k_list)
    rows = []
    for name in tqdm(names, disable=not progress, desc="alignment"):
        info = parse_param_name(name)
        theta0 = read_tensor(base, name, device=device)
        final_delta = read_tensor(final, name, device=device)
        check_same_shape(name, base, final, theta0.shape, final_delta.shape)
        final_bases = _bases(final_delta.sub_(theta0), kmax, method)
        del final_delta
        for label, ckpt in labelled.items():
            delta = read_tensor(ckpt, name, device=device)
            check_same_shape(name, base, ckpt, theta0.shape, delta.shape)
            bases = _bases(delta.sub_(theta0), kmax, method)
            del delta
            rows.append({"checkpoint": label, "name": name, "layer": info.layer,
                         "module": info.module, "group": info.group,
                         "rows": theta0.shape[0], "cols": theta0.shape[1],
                         **alignment_row(bases, final_bases, k_list)})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["layer"] = table["layer"].astype("Int64")
    return table

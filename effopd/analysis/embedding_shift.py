"""How far training moved the input embeddings of the tokens a model uses (SPEC section 4).

For token t with base row e_0(t) and trained row e_T(t) of the input embedding:

    cos(t) = e_0(t) . e_T(t) / (||e_0(t)|| ||e_T(t)||),

averaged over the unique token ids of the generated responses (as the
authors do). The picture projects base and trained rows onto one shared
2-D PCA basis fitted on their union, as the authors' ``embedding_shift.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from effopd.analysis.checkpoint_io import (
    CheckpointLike,
    open_checkpoint,
    parse_param_name,
    read_tensor,
)
from effopd.device import DeviceLike


def embedding_name(ckpt: CheckpointLike) -> str:
    """Name of the input-embedding tensor (module ``embed``); ``KeyError`` if there is none."""
    ckpt = open_checkpoint(ckpt)
    for name in ckpt.names:
        try:
            if parse_param_name(name).module == "embed":
                return name
        except ValueError:
            continue
    raise KeyError(f"no input-embedding tensor in checkpoint {ckpt.directory}")


def unique_token_ids(token_ids: Iterable[int]) -> np.ndarray:
    """Sorted unique token ids as int64 (the authors' ``tensor.unique()``)."""
    ids = np.unique(np.asarray(list(token_ids), dtype=np.int64))
    if ids.size == 0:
        raise ValueError("no token ids given")
    return ids


def check_token_ids(token_ids: np.ndarray, vocab: int, where: object) -> None:
    """Raise ``ValueError`` for token ids outside the vocabulary [0, vocab) of ``where``."""
    bad = token_ids[(token_ids < 0) | (token_ids >= vocab)]
    if bad.size:
        raise ValueError(f"token ids {bad[:5].tolist()} outside the vocabulary [0, {vocab}) "
                         f"of {where}")


def embedding_rows(ckpt: CheckpointLike, token_ids: np.ndarray,
                   device: DeviceLike = "cpu") -> torch.Tensor:
    """Rows ``token_ids`` of the input embedding, float32 (the full matrix is read once)."""
    table = read_tensor(ckpt, embedding_name(ckpt), device=device)
    check_token_ids(token_ids, table.shape[0], open_checkpoint(ckpt).directory)
    rows = table[torch.as_tensor(token_ids, device=table.device)].clone()
    del table
    return rows


def row_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine a_i . b_i / (||a_i|| ||b_i||) in float64; NaN where a row is zero."""
    a64, b64 = a.to(torch.float64), b.to(device=a.device, dtype=torch.float64)
    norms = torch.linalg.vector_norm(a64, dim=1) * torch.linalg.vector_norm(b64, dim=1)
    dots = (a64 * b64).sum(dim=1)
    return torch.where(norms > 0, dots / norms, torch.full_like(dots, float("nan"))).cpu()


def embedding_cosine(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                     token_ids: Iterable[int], device: DeviceLike = "cpu") -> pd.DataFrame:
    """Per unique token: cosine(base row, trained row), both norms and ||e_T - e_0||.

    Columns: token_id, cosine, base_norm, trained_norm, shift_norm. The SPEC's
    number is the mean of ``cosine`` (:func:`embedding_cosine_summary`).
    """
    ids = unique_token_ids(token_ids)
    return cosine_table(ids, embedding_rows(base_dir, ids, device),
                        embedding_rows(ckpt_dir, ids, device))


def cosine_table(ids: np.ndarray, base_rows: torch.Tensor,
                 trained_rows: torch.Tensor) -> pd.DataFrame:
    """The :func:`embedding_cosine` table of rows already read (row i is token ``ids[i]``)."""
    base, trained = base_rows.to(torch.float64), trained_rows.to(torch.float64)
    return pd.DataFrame({
        "token_id": ids,
        "cosine": row_cosine(base, trained).numpy(),
        "base_norm": torch.linalg.vector_norm(base, dim=1).cpu().numpy(),
        "trained_norm": torch.linalg.vector_norm(trained, dim=1).cpu().numpy(),
        "shift_norm": torch.linalg.vector_norm(trained - base, dim=1).cpu().numpy(),
    })


def embedding_cosine_summary(table: pd.DataFrame) -> dict[str, float]:
    """Mean, median and minimum cosine and the token count of an :func:`embedding_cosine` table."""
    cosine = table["cosine"].dropna()
    return {"mean_cosine": float(cosine.mean()), "median_cosine": float(cosine.median()),
            "min_cosine": float(cosine.min()), "n_tokens": int(len(table))}


class PCA2D(NamedTuple):
    """A 2-D PCA: coords (N x 2), components (2 x d), mean (d), explained variance ratio (2)."""

    coords: torch.Tensor
    components: torch.Tensor
    mean: torch.Tensor
    explained_variance_ratio: torch.Tensor


def pca_2d(x: torch.Tensor) -> PCA2D:
    """Project rows of ``x`` on its top two principal axes (float64).

    With X_c = X - mean and X_c = U S W^T, components = W[:, :2]^T, coords =
    X_c W[:, :2], explained ratio = S_i^2 / sum S^2. Each component's sign is
    fixed so that its largest-magnitude entry is positive.
    """
    data = x.to(torch.float64)
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 2:
        raise ValueError(f"need at least 2 rows and 2 columns, got shape {tuple(data.shape)}")
    mean = data.mean(dim=0)
    centred = data - mean
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    components = vh[:2]
    pivots = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    components = components * torch.where(pivots < 0, -1.0, 1.0).to(components.dtype)
    total = (s**2).sum()
    ratio = (s[:2] ** 2) / total if total > 0 else torch.full((2,), float("nan"))
    return PCA2D((centred @ components.mT).cpu(), components.cpu(), mean.cpu(), ratio.cpu())


def embedding_projection(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                         token_ids: Iterable[int], method: str = "pca",
                         device: DeviceLike = "cpu") -> pd.DataFrame:
    """2-D coordinates of base and trained rows in one PCA basis fitted on their union.

    Columns: token_id, source ("base" or "trained"), x, y; the explained
    variance ratios of the two axes are in ``table.attrs["explained_variance_ratio"]``.
    Only ``method="pca"`` is implemented.
    """
    if method != "pca":
        raise ValueError(f"only method='pca' is implemented, got {method!r}")
    ids = unique_token_ids(token_ids)
    return projection_table(ids, embedding_rows(base_dir, ids, device),
                            embedding_rows(ckpt_dir, ids, device))


def projection_table(ids: np.ndarray, base: torch.Tensor, trained: torch.Tensor
                     ) -> pd.DataFrame:
    """The :func:`embedding_projection` table of rows already read (row i is ``ids[i]``)."""
    fit = pca_2d(torch.cat([base, trained]))
    coords = fit.coords.numpy()
    table = pd.DataFrame({
        "token_id": np.concatenate([ids, ids]),
        "source": ["base"] * len(ids) + ["trained"] * len(ids),
        "x": coords[:, 0], "y": coords[:, 1],
    })
    table.attrs["explained_variance_ratio"] = fit.explained_variance_ratio.tolist()
    return table

"""Per-matrix spectra of one checkpoint's update, streamed tensor by tensor (SPEC section 4).

For every 2-D block weight Delta = theta_t - theta_0 (float32 difference,
float64 spectrum): sigma_1, effective rank exp(H(sigma / sum sigma)), stable
rank sum sigma^2 / sigma_1^2, energy share of the top k directions
sum_{i<=k} sigma_i^2 / sum sigma_i^2 and the rank-k norm ratio
||Delta_k||_F / ||Delta||_F = sqrt(energy share), for each k asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from effopd.analysis.checkpoint_io import (
    CheckpointLike,
    block_matrix_names,
    iter_update_tensors,
    open_checkpoint,
    parse_param_name,
)
from effopd.analysis.spectra import (
    effective_rank,
    energy_share,
    singular_values,
    stable_rank,
)
from effopd.device import DeviceLike

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64)


def iter_update_spectra(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                        names: Iterable[str] | None = None, method: str = "gram",
                        device: DeviceLike = "cpu",
                        progress: bool = False,
                        ) -> Iterator[tuple[str, tuple[int, int], torch.Tensor]]:
    """Yield ``(name, shape, singular values of Delta)`` for each 2-D block weight.

    ``names`` defaults to every 2-D block weight of the base; singular values
    as in :func:`effopd.analysis.spectra.singular_values` (``method``).
    """
    base = open_checkpoint(base_dir)
    names = block_matrix_names(base) if names is None else list(names)
    updates = iter_update_tensors(base, ckpt_dir, names, device=device)
    for name, delta in tqdm(updates, total=len(names), disable=not progress,
                            desc=f"spectra {open_checkpoint(ckpt_dir).directory.name}"):
        yield name, tuple(delta.shape), singular_values(delta, method=method)


def spectrum_row(s: torch.Tensor, ks: Sequence[int]) -> dict[str, float]:
    """The spectral summary of one matrix from its singular values (NaN ratios if all zero)."""
    row = {"delta_norm": float(torch.linalg.vector_norm(s)),
           "sigma_1": float(s.max()) if s.numel() else math.nan,
           "effective_rank": effective_rank(s), "stable_rank": stable_rank(s)}
    for k in ks:
        share = energy_share(s, k)
        row[f"energy_share_k{k}"] = share
        row[f"norm_ratio_k{k}"] = math.sqrt(share)
    return row


def spectra_table(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                  ks: Sequence[int] = DEFAULT_KS, names: Iterable[str] | None = None,
                  method: str = "gram", device: DeviceLike = "cpu",
                  progress: bool = False) -> pd.DataFrame:
    """One row per 2-D block weight: name, layer, module, group, rows, cols and the spectra.

    Spectral columns: delta_norm (sqrt of sum sigma^2), sigma_1, effective_rank,
    stable_rank, energy_share_k{k} and norm_ratio_k{k} for each k in ``ks``.
    One pass over the tensors; memory holds one update at a time.
    """
    rows = []
    for name, shape, s in iter_update_spectra(base_dir, ckpt_dir, names, method, device, progress):
        info = parse_param_name(name)
        rows.append({"name": name, "layer": info.layer, "module": info.module,
                     "group": info.group, "rows": shape[0], "cols": shape[1],
                     **spectrum_row(s, ks)})
    table = pd.DataFrame(rows)
    if not table.empty:
        table["layer"] = table["layer"].astype("Int64")
    return table

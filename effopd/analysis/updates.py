"""Update size and module allocation of one checkpoint (SPEC section 4).

Per tensor: ||Delta||_F, ||theta_0||_F and the relative norm
||Delta||_F / ||theta_0||_F, accumulated in float64 over blocks of rows so that
even a 151936 x 4096 embedding is reduced in bounded memory.

Aggregation over a set of tensors g adds squared norms:

    ||Delta_g||_F = sqrt(sum_{tensors in g} ||Delta||_F^2),
    share_g       = ||Delta_g||_F^2 / sum_g' ||Delta_g'||_F^2,

so shares are shares of the squared norm ("update energy") and sum to 1; a
share of plain norms would not add up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch

from effopd.analysis.checkpoint_io import (
    CheckpointLike,
    check_same_names,
    iter_row_blocks,
    open_checkpoint,
    parse_param_name,
    tensor_shape,
)
from effopd.device import DeviceLike

NORM_COLUMNS = ("name", "layer", "module", "group", "block", "shape", "numel",
                "delta_norm", "base_norm", "relative_norm")


def add_squared_norms(sums: list[float], delta: torch.Tensor, theta0: torch.Tensor) -> None:
    """Add ||Delta||_F^2 and ||theta_0||_F^2 of one block of rows to ``sums`` (float64)."""
    sums[0] += float(torch.linalg.vector_norm(delta, dtype=torch.float64) ** 2)
    sums[1] += float(torch.linalg.vector_norm(theta0, dtype=torch.float64) ** 2)


def _squared_norms(base: CheckpointLike, ckpt: CheckpointLike, name: str,
                   max_elements: int, device: DeviceLike) -> tuple[float, float]:
    """Return (||Delta||_F^2, ||theta_0||_F^2) of one tensor, streamed by row blocks."""
    sums = [0.0, 0.0]
    for theta0, theta in iter_row_blocks(base, ckpt, name, max_elements, device=device):
        add_squared_norms(sums, theta.sub_(theta0), theta0)
    return sums[0], sums[1]


def norm_row(name: str, shape: Sequence[int], delta_sq: float, base_sq: float
             ) -> dict[str, object]:
    """One tensor's row of a norm table from its squared norms (see :func:`update_norm_table`)."""
    info = parse_param_name(name)
    return {
        "name": name, "layer": info.layer, "module": info.module, "group": info.group,
        "block": info.layer is not None, "shape": "x".join(map(str, shape)),
        "numel": math.prod(shape), "delta_norm": math.sqrt(delta_sq),
        "base_norm": math.sqrt(base_sq),
        "relative_norm": math.sqrt(delta_sq / base_sq) if base_sq > 0 else math.nan,
    }


def norm_table(rows: Sequence[dict[str, object]]) -> pd.DataFrame:
    """A norm table from :func:`norm_row` rows (``layer`` a nullable integer column)."""
    table = pd.DataFrame(rows, columns=list(NORM_COLUMNS))
    table["layer"] = table["layer"].astype("Int64")
    return table


def update_norm_table(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                      names: Iterable[str] | None = None, device: DeviceLike = "cpu",
                      max_elements: int = 1 << 24) -> pd.DataFrame:
    """One row per tensor: name, layer, module, group, block, shape, numel, norms.

    ``delta_norm`` = ||theta_t - theta_0||_F, ``base_norm`` = ||theta_0||_F,
    ``relative_norm`` = delta_norm / base_norm (NaN when the base tensor is 0);
    all in float64 from float32 (or wider) tensors. ``block`` marks tensors
    inside transformer blocks. ``layer`` is a nullable integer column.
    """
    base, ckpt = open_checkpoint(base_dir), open_checkpoint(ckpt_dir)
    names = check_same_names(base, ckpt, base.names if names is None else names)
    return norm_table([norm_row(name, tensor_shape(base, name),
                                *_squared_norms(base, ckpt, name, max_elements, device))
                       for name in names])


def total_update_norm(table: pd.DataFrame, block_only: bool = True) -> float:
    """sqrt(sum ||Delta||_F^2) over the block weights (or every tensor) of a norm table."""
    rows = table[table["block"]] if block_only else table
    return math.sqrt(float((rows["delta_norm"] ** 2).sum()))


def _sum_squares(rows: pd.DataFrame, keys: list[str], sort: bool) -> pd.DataFrame:
    """Group a norm table by ``keys``: n_tensors, numel, delta_sq, base_sq, delta_norm,
    base_norm and ``share`` = delta_sq / the total over the rows given (the update
    share, defined here once; NaN when there is no update)."""
    grouped = rows.assign(delta_sq=rows["delta_norm"] ** 2, base_sq=rows["base_norm"] ** 2
                          ).groupby(keys, sort=sort, observed=True).agg(
        n_tensors=("name", "size"), numel=("numel", "sum"), delta_sq=("delta_sq", "sum"),
        base_sq=("base_sq", "sum")).reset_index()
    total = grouped["delta_sq"].sum()
    grouped["delta_norm"] = grouped["delta_sq"] ** 0.5
    grouped["base_norm"] = grouped["base_sq"] ** 0.5
    grouped["share"] = grouped["delta_sq"] / total if total > 0 else math.nan
    return grouped


def aggregate_update_norms(table: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Aggregate a norm table by ``by`` (e.g. "layer", "module", "group", ["layer", "group"]).

    Columns: the keys, n_tensors, numel, delta_norm = sqrt(sum delta_norm^2),
    base_norm likewise, relative_norm = delta_norm / base_norm, share =
    delta_norm^2 / total over the rows aggregated (sums to 1). Rows whose key
    is missing (e.g. layer of the embedding when by="layer") are dropped before
    the total is taken; filter the table first (``table[table.block]``) to
    choose the population explicitly.
    """
    keys = [by] if isinstance(by, str) else list(by)
    grouped = _sum_squares(table.dropna(subset=keys), keys, sort=True)
    grouped.insert(grouped.columns.get_loc("share"), "relative_norm",
                   grouped["delta_norm"] / grouped["base_norm"])
    return grouped.drop(columns=["delta_sq", "base_sq"])


def allocation_rows(norms: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a per-tensor norm table by (layer, module): norms and share of the total.

    share = ||Delta_(layer, module)||_F^2 / sum over every tensor of ||Delta||_F^2
    (embeddings and head included, so their share shows); relative_norm is NaN where
    the base norm is 0.
    """
    table = norms.assign(layer_key=norms["layer"].fillna(-1).astype(int))
    grouped = _sum_squares(table, ["layer_key", "module", "group"], sort=False)
    grouped["layer"] = grouped["layer_key"].where(grouped["layer_key"] >= 0).astype("Int64")
    grouped["relative_norm"] = grouped["delta_norm"] / grouped["base_norm"].where(
        grouped["base_norm"] > 0)
    return grouped[["layer", "module", "group", "n_tensors", "numel", "delta_norm", "base_norm",
                    "relative_norm", "share"]]


def update_size_row(norms: pd.DataFrame) -> dict[str, float]:
    """One checkpoint's update sizes from its norm table: block_norm (the SPEC's update
    size, block weights), total_norm (every tensor), block_relative_norm (relative to
    ||theta_0||_F of the block weights) and embedding_norm."""
    block = norms[norms["block"]]
    block_sq = float((block["delta_norm"] ** 2).sum())
    block_base_sq = float((block["base_norm"] ** 2).sum())
    return {"block_norm": math.sqrt(block_sq), "total_norm": total_update_norm(norms, False),
            "block_relative_norm": math.sqrt(block_sq / block_base_sq)
            if block_base_sq > 0 else math.nan,
            "embedding_norm": math.sqrt(float(
                (norms.loc[norms["group"] == "embedding", "delta_norm"] ** 2).sum()))}


def update_size_series(base_dir: CheckpointLike, ckpt_dirs: Mapping[str, CheckpointLike],
                       device: DeviceLike = "cpu") -> pd.DataFrame:
    """One row per checkpoint label: block_norm (block weights) and total_norm (all tensors).

    block_norm is the SPEC's update size ||Delta_t||_F over all block weights.
    """
    rows = []
    for label, ckpt in ckpt_dirs.items():
        table = update_norm_table(base_dir, ckpt, device=device)
        rows.append({"checkpoint": label, "block_norm": total_update_norm(table, True),
                     "total_norm": total_update_norm(table, False)})
    return pd.DataFrame(rows, columns=["checkpoint", "block_norm", "total_norm"])

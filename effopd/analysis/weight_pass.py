"""The weight analyses of a checkpoint series in ONE streaming pass (``effopd analyze``).

Every tensor of the base and of every checkpoint is read from disk once, in
float32, tensor by tensor (tensors are the outer loop, checkpoints the inner
one), and everything the analyses need is taken from that read:

- **norms**: per checkpoint and tensor ||Delta||_F, ||theta_0||_F
  (:func:`effopd.analysis.updates.norm_row`), accumulated in float64 over blocks
  of rows (:func:`effopd.analysis.checkpoint_io.row_ranges`), so even a
  151936 x 4096 embedding is reduced in bounded memory;
- **spectra** and **alignment**: per 2-D block weight and checkpoint, one float64
  decomposition of the update (:func:`effopd.analysis.spectra.spectrum_and_subspaces`:
  every singular value for :func:`effopd.analysis.spectra.spectrum_row`, the
  top-kmax singular vectors for :func:`effopd.analysis.alignment.alignment_row`).
  The final update's bases are computed once per tensor, before the other
  checkpoints of that tensor, and reused for the final checkpoint's own row;
- **embedding shift**: the input-embedding rows of the generated tokens, gathered
  from the base's and the final checkpoint's blocks of rows as they stream by
  (:func:`effopd.analysis.embedding_shift.cosine_table`, ``projection_table``).

Memory: theta_0 of one tensor (or one block of rows), one checkpoint's tensor,
and the m x kmax / n x kmax bases of the final update.

:func:`analyze_series` writes the tables (module docstring of
:mod:`effopd.analysis`); :func:`series_tables`, :func:`spectra_table` and
:func:`alignment_table` are views of the same pass for one family of tables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from effopd.analysis.alignment import alignment_row, checkpoint_labels
from effopd.analysis.checkpoint_io import (
    Checkpoint,
    CheckpointLike,
    block_matrix_names,
    check_same_names,
    check_same_shape,
    open_checkpoint,
    parse_param_name,
    read_tensor,
    read_tensor_rows,
    row_ranges,
    tensor_shape,
)
from effopd.analysis.embedding_shift import (
    check_token_ids,
    cosine_table,
    embedding_name,
    projection_table,
    unique_token_ids,
)
from effopd.analysis.generated_tokens import final_samples_file, generated_token_ids
from effopd.analysis.series import Series
from effopd.analysis.settings import ALIGNMENT_KS, SPECTRA_KS
from effopd.analysis.spectra import Subspaces, spectrum_and_subspaces, spectrum_row
from effopd.analysis.updates import (
    add_squared_norms,
    allocation_rows,
    norm_row,
    norm_table,
    update_size_row,
)
from effopd.device import DeviceLike, resolve_device
from effopd.io import write_csv
from effopd.tables import with_run

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
MAX_ELEMENTS = 1 << 24  # elements per block of rows of a tensor reduced for its norms
EMBEDDING_COLUMNS = ["token_id", "cosine", "base_norm", "trained_norm", "shift_norm"]
PROJECTION_COLUMNS = ["token_id", "source", "x", "y"]


@dataclass
class PassResult:
    """What one pass yields: per-checkpoint norm tables (label -> table), the spectra
    and alignment tables, and the embedding rows of the requested tokens."""

    norms: dict[str, pd.DataFrame] = field(default_factory=dict)
    spectra: pd.DataFrame = field(default_factory=pd.DataFrame)
    alignment: pd.DataFrame = field(default_factory=pd.DataFrame)
    token_ids: np.ndarray | None = None
    base_rows: torch.Tensor | None = None
    final_rows: torch.Tensor | None = None


def _decompose(delta: torch.Tensor, kmax: int, method: str
               ) -> tuple[torch.Tensor, Subspaces | None]:
    """Singular values and top-kmax bases of one update (bases None for a zero update)."""
    s, bases = spectrum_and_subspaces(delta, min(kmax, *delta.shape), method)
    return s, (bases if bool(s[0] > 0) else None)


def _gather_rows(block: torch.Tensor, ids: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """The rows of ``ids`` that fall in rows ``start:stop`` of a tensor, from its block."""
    inside = ids[(ids >= start) & (ids < stop)] - start
    return block[torch.as_tensor(inside, device=block.device)].clone()


def stream_updates(base_dir: CheckpointLike, ckpt_dirs: Mapping[str, CheckpointLike],
                   final_dir: CheckpointLike, *, norms: bool = True, spectra: bool = True,
                   ks: Sequence[int] = SPECTRA_KS, k_list: Sequence[int] = ALIGNMENT_KS,
                   names: Iterable[str] | None = None, method: str = "gram",
                   token_ids: Iterable[int] | None = None, device: DeviceLike = "cpu",
                   max_elements: int = MAX_ELEMENTS, progress: bool = False) -> PassResult:
    """The pass (module docstring) over ``ckpt_dirs`` (label -> checkpoint) against the
    final checkpoint ``final_dir`` (read separately only when it is not among them).

    ``norms``: per-checkpoint norm tables of every tensor of the base. ``spectra``:
    spectra (``ks``) and alignment (``k_list``) of the 2-D block weights (``names``,
    default all). ``token_ids``: the final checkpoint (which must be among
    ``ckpt_dirs``) and the base's input-embedding rows of these tokens.
    """
    base, final = open_checkpoint(base_dir), open_checkpoint(final_dir)
    labelled = {label: open_checkpoint(c) for label, c in ckpt_dirs.items()}
    device = resolve_device(device)
    final_path = final.directory.resolve()
    final_labels = [label for label, c in labelled.items() if c.directory.resolve() == final_path]
    matrices = (block_matrix_names(base) if names is None else list(names)) if spectra else []
    matrix_set = set(matrices)
    ids = embed = None
    if token_ids is not None:
        if not final_labels:
            raise ValueError("embedding rows need the final checkpoint among the checkpoints")
        ids, embed = unique_token_ids(token_ids), embedding_name(base)
    order = list(base.names) if norms else list(matrices)
    if embed is not None and embed not in order:
        order.append(embed)
    for ckpt in labelled.values():
        check_same_names(base, ckpt, order, warn_extra=norms)
    kmax = max(k_list) if k_list else 1
    sums = {label: {} for label in labelled}  # label -> name -> [delta_sq, base_sq]
    result = PassResult(token_ids=ids)
    spectra_rows, alignment_rows = [], []
    for name in tqdm(order, disable=not progress, desc="weights"):
        if name in matrix_set:
            rows = _matrix(base, final, labelled, final_labels, name, kmax, method, ks, k_list,
                           device, sums if norms else None, max_elements)
            spectra_rows.extend(rows[0])
            alignment_rows.extend(rows[1])
        else:
            _rows_streamed(base, labelled, final_labels, name, device, sums if norms else None,
                           max_elements, ids if name == embed else None, result)
    if norms:
        shapes = {name: tensor_shape(base, name) for name in base.names}
        result.norms = {label: norm_table([norm_row(name, shapes[name], *sums[label][name])
                                           for name in base.names]) for label in labelled}
    result.spectra, result.alignment = pd.DataFrame(spectra_rows), pd.DataFrame(alignment_rows)
    for table in (result.spectra, result.alignment):
        if not table.empty:
            table["layer"] = table["layer"].astype("Int64")
    return result


def _matrix(base: Checkpoint, final: Checkpoint, labelled: Mapping[str, Checkpoint],
            final_labels: Sequence[str], name: str, kmax: int, method: str,
            ks: Sequence[int], k_list: Sequence[int], device: torch.device,
            sums: dict[str, dict[str, list[float]]] | None, max_elements: int,
            ) -> tuple[list[dict], list[dict]]:
    """One 2-D block weight: each checkpoint's update read once, its norms (by the same
    blocks of rows as every other tensor), spectrum and bases; the final's first."""
    theta0 = read_tensor(base, name, device=device)

    def update(ckpt: Checkpoint, label: str | None) -> tuple[torch.Tensor, Subspaces | None]:
        delta = read_tensor(ckpt, name, device=device)
        check_same_shape(name, base, ckpt, theta0.shape, delta.shape)
        delta.sub_(theta0)
        if sums is not None and label is not None:
            sums[label][name] = total = [0.0, 0.0]
            for start, stop in row_ranges(theta0.shape, max_elements):
                add_squared_norms(total, delta[start:stop], theta0[start:stop])
        return _decompose(delta, kmax, method)

    final_s, final_bases = update(final, final_labels[0] if final_labels else None)
    for label in final_labels[1:]:
        if sums is not None:
            sums[label][name] = list(sums[final_labels[0]][name])
    info = parse_param_name(name)
    ids = {"name": name, "layer": info.layer, "module": info.module, "group": info.group,
           "rows": theta0.shape[0], "cols": theta0.shape[1]}
    spectra_rows, alignment_rows = [], []
    for label, ckpt in labelled.items():
        s, bases = (final_s, final_bases) if label in final_labels else update(ckpt, label)
        spectra_rows.append({"checkpoint": label, **ids, **spectrum_row(s, ks)})
        alignment_rows.append({"checkpoint": label, **ids,
                               **alignment_row(bases, final_bases, k_list)})
    return spectra_rows, alignment_rows


def _rows_streamed(base: Checkpoint, labelled: Mapping[str, Checkpoint],
                   final_labels: Sequence[str], name: str, device: torch.device,
                   sums: dict[str, dict[str, list[float]]] | None, max_elements: int,
                   ids: np.ndarray | None, result: PassResult) -> None:
    """Any other tensor, by blocks of rows: each block of the base read once, then the
    same block of every checkpoint; norms, and the embedding rows of ``ids``."""
    shape = tensor_shape(base, name)
    for ckpt in labelled.values():
        check_same_shape(name, base, ckpt, shape, tensor_shape(ckpt, name))
    if sums is not None:
        for label in labelled:
            sums[label][name] = [0.0, 0.0]
    if ids is not None:
        check_token_ids(ids, shape[0], base.directory)
    blocks = [None] if len(shape) < 2 else row_ranges(shape, max_elements)
    base_parts, final_parts = [], []
    for block in blocks:
        read = (lambda c: read_tensor(c, name, device=device)) if block is None else (
            lambda c, b=block: read_tensor_rows(c, name, b[0], b[1], device=device))
        theta0 = read(base)
        if ids is not None:
            base_parts.append(_gather_rows(theta0, ids, *block))
        for label, ckpt in labelled.items():
            if label in final_labels[1:]:
                continue
            theta = read(ckpt)
            if ids is not None and label == final_labels[0]:
                final_parts.append(_gather_rows(theta, ids, *block))
            if sums is not None:
                add_squared_norms(sums[label][name], theta.sub_(theta0), theta0)
        for label in final_labels[1:]:
            if sums is not None:
                sums[label][name] = list(sums[final_labels[0]][name])
    if ids is not None:
        result.base_rows, result.final_rows = torch.cat(base_parts), torch.cat(final_parts)


# --------------------------------------------------------------------------- the tables


def _with_info(table: pd.DataFrame, series: Series) -> pd.DataFrame:
    """Insert step and fraction after the ``checkpoint`` column of a series table."""
    infos = {series.labels[i]: series.info(i) for i in range(len(series.paths))}
    table = table.copy()
    table.insert(1, "step", [infos[c]["step"] for c in table["checkpoint"]])
    table.insert(2, "fraction", [infos[c]["fraction"] for c in table["checkpoint"]])
    table["step"] = table["step"].astype("Int64")
    return table


def weight_tables(series: Series, ks: Sequence[int] = SPECTRA_KS,
                  alignment_ks: Sequence[int] = ALIGNMENT_KS, method: str = "gram",
                  samples: PathLike | None = None, device: DeviceLike = "cpu",
                  progress: bool = False) -> dict[str, pd.DataFrame]:
    """Every weight-analysis table of a series from one pass: name -> table.

    ``update_norms``, ``module_allocation``, ``spectra``, ``alignment`` and, with
    ``samples`` (the final checkpoint's generations), ``embedding_cosine`` and
    ``embedding_projection`` (empty, with their columns, when nothing was generated).
    """
    token_ids = None
    if samples is not None:
        samples_file = final_samples_file(samples, series.final_step)
        token_ids = generated_token_ids(samples_file, series.final)
        if token_ids.size == 0:
            log.warning("%s: no generated tokens; embedding tables left empty", samples_file)
    result = stream_updates(series.base, dict(zip(series.labels, series.paths, strict=True)),
                            series.final, ks=ks, k_list=alignment_ks, method=method,
                            token_ids=token_ids if token_ids is not None and token_ids.size
                            else None, device=device, progress=progress)
    sizes, allocations = [], []
    for index, label in enumerate(series.labels):
        norms, info = result.norms[label], series.info(index)
        sizes.append({**info, **update_size_row(norms)})
        allocation = allocation_rows(norms)
        for column, value in reversed(list(info.items())):
            allocation.insert(0, column, value)
        allocations.append(allocation)
    tables = {"update_norms": pd.DataFrame(sizes),
              "module_allocation": pd.concat(allocations, ignore_index=True),
              "spectra": _with_info(result.spectra, series),
              "alignment": _with_info(result.alignment, series)}
    if samples is not None:
        if result.token_ids is None:
            tables["embedding_cosine"] = pd.DataFrame(columns=EMBEDDING_COLUMNS)
            tables["embedding_projection"] = pd.DataFrame(columns=PROJECTION_COLUMNS)
        else:
            tables["embedding_cosine"] = cosine_table(result.token_ids, result.base_rows,
                                                      result.final_rows)
            projection = projection_table(result.token_ids, result.base_rows,
                                          result.final_rows)
            ratio = projection.attrs["explained_variance_ratio"]
            tables["embedding_projection"] = projection.assign(explained_x=ratio[0],
                                                               explained_y=ratio[1])
    return tables


def analyze_series(series: Series, out_dir: PathLike, ks: Sequence[int] = SPECTRA_KS,
                   alignment_ks: Sequence[int] = ALIGNMENT_KS, method: str = "gram",
                   samples: PathLike | None = None, device: str = "cpu",
                   progress: bool = False) -> dict[str, Path]:
    """Write the weight-analysis tables of a series into ``out_dir``, each with the run's
    identity first (``series.run``); return name -> path."""
    tables = weight_tables(series, ks, alignment_ks, method, samples,
                           str(resolve_device(device)), progress)
    out = Path(out_dir)
    written = {name: write_csv(with_run(table, series.run), out / f"{name}.csv")
               for name, table in tables.items()}
    log.info("update norms, allocation, spectra and alignment of %d checkpoints x %d "
             "matrices written", len(series.paths), len(tables["spectra"]["name"].unique())
             if not tables["spectra"].empty else 0)
    cosine = tables.get("embedding_cosine")
    if cosine is not None and not cosine.empty:
        log.info("embedding shift: mean cosine %.6f over %d tokens",
                 cosine["cosine"].mean(), len(cosine))
    return written


# --------------------------------------------------------------------------- views


def series_tables(base_dir: CheckpointLike,
                  ckpt_dirs: Mapping[str, CheckpointLike] | Sequence[CheckpointLike],
                  final_dir: CheckpointLike, ks: Sequence[int] = SPECTRA_KS,
                  k_list: Sequence[int] = ALIGNMENT_KS, names: Iterable[str] | None = None,
                  method: str = "gram", device: DeviceLike = "cpu",
                  progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(spectra, alignment)`` for every checkpoint and 2-D block weight.

    Columns: checkpoint (label: mapping key or directory name), name, layer, module,
    group, rows, cols, then the spectral summary (:func:`effopd.analysis.spectra.spectrum_row`:
    delta_norm, sigma_1, effective_rank, stable_rank, energy_share_k{k}, norm_ratio_k{k}
    for k in ``ks``) or the overlaps (:func:`effopd.analysis.alignment.alignment_row`,
    k in ``k_list``). ``method`` is "gram" (default) or "svd".
    """
    result = stream_updates(base_dir, checkpoint_labels(ckpt_dirs), final_dir, norms=False,
                            ks=ks, k_list=k_list, names=names, method=method, device=device,
                            progress=progress)
    return result.spectra, result.alignment


def spectra_table(base_dir: CheckpointLike, ckpt_dir: CheckpointLike,
                  ks: Sequence[int] = SPECTRA_KS, names: Iterable[str] | None = None,
                  method: str = "gram", device: DeviceLike = "cpu",
                  progress: bool = False) -> pd.DataFrame:
    """The spectra of one checkpoint's update (:func:`series_tables` without ``checkpoint``)."""
    spectra, _ = series_tables(base_dir, {"checkpoint": ckpt_dir}, ckpt_dir, ks=ks, k_list=(1,),
                               names=names, method=method, device=device, progress=progress)
    return spectra.drop(columns="checkpoint")


def alignment_table(base_dir: CheckpointLike,
                    ckpt_dirs: Mapping[str, CheckpointLike] | Sequence[CheckpointLike],
                    final_dir: CheckpointLike, k_list: Sequence[int] = ALIGNMENT_KS,
                    names: Iterable[str] | None = None, method: str = "gram",
                    device: DeviceLike = "cpu", progress: bool = False) -> pd.DataFrame:
    """Overlaps of each checkpoint's top-k subspaces with the final update's
    (:func:`series_tables`' alignment table); NaN for a k above min(rows, cols) or a
    zero update on either side."""
    return series_tables(base_dir, ckpt_dirs, final_dir, ks=(), k_list=k_list, names=names,
                         method=method, device=device, progress=progress)[1]

"""Spectra and alignment of a whole checkpoint series in one streaming pass.

Same numbers as :func:`effopd.analysis.spectra_table.spectra_table` (per
checkpoint) and :func:`effopd.analysis.alignment.alignment_table`, but each
(2-D block weight, checkpoint) update is decomposed ONCE: one float64 ``eigh``
of its smaller Gram matrix gives every singular value (for the spectra) and the
top-kmax singular vectors (for the alignment). The final update's bases are
computed once per tensor and reused, also for the final checkpoint's own row
when it is part of the series. Memory: theta_0 of one tensor, one update, and
the m x kmax / n x kmax bases of the final update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from effopd.analysis.alignment import DEFAULT_K_LIST, alignment_row, checkpoint_labels
from effopd.analysis.checkpoint_io import (
    Checkpoint,
    CheckpointLike,
    block_matrix_names,
    open_checkpoint,
    parse_param_name,
    read_tensor,
)
from effopd.analysis.spectra import Subspaces, spectrum_and_subspaces
from effopd.analysis.spectra_table import DEFAULT_KS, spectrum_row
from effopd.device import DeviceLike, resolve_device


def _decompose(base: Checkpoint, ckpt: Checkpoint, name: str, theta0: torch.Tensor,
               kmax: int, method: str) -> tuple[torch.Tensor, Subspaces | None]:
    """Singular values and top-kmax bases of theta_t - theta_0 (bases None for a zero update)."""
    delta = read_tensor(ckpt, name, device=theta0.device)
    if delta.shape != theta0.shape:
        raise ValueError(f"tensor {name!r}: shape {tuple(delta.shape)} in {ckpt.directory} "
                         f"differs from {tuple(theta0.shape)} in base {base.directory}")
    delta.sub_(theta0)
    s, bases = spectrum_and_subspaces(delta, min(kmax, *delta.shape), method)
    return s, (bases if bool(s[0] > 0) else None)


def series_tables(base_dir: CheckpointLike,
                  ckpt_dirs: Mapping[str, CheckpointLike] | Sequence[CheckpointLike],
                  final_dir: CheckpointLike, ks: Sequence[int] = DEFAULT_KS,
                  k_list: Sequence[int] = DEFAULT_K_LIST, names: Iterable[str] | None = None,
                  method: str = "gram", device: DeviceLike = "cpu",
                  progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(spectra, alignment)`` for every checkpoint and 2-D block weight.

    ``spectra`` has the columns of ``spectra_table`` plus ``checkpoint`` first;
    ``alignment`` has the columns of ``alignment_table``. ``method`` is "gram"
    (default) or "svd"; see :func:`effopd.analysis.spectra.spectrum_and_subspaces`.
    """
    base, final = open_checkpoint(base_dir), open_checkpoint(final_dir)
    labelled = {label: open_checkpoint(c) for label, c in checkpoint_labels(ckpt_dirs).items()}
    names = block_matrix_names(base) if names is None else list(names)
    device = resolve_device(device)
    kmax = max(k_list)
    final_path = final.directory.resolve()
    spectra_rows, alignment_rows = [], []
    for name in tqdm(names, disable=not progress, desc="series"):
        info = parse_param_name(name)
        theta0 = read_tensor(base, name, device=device)
        ids = {"name": name, "layer": info.layer, "module": info.module, "group": info.group,
               "rows": theta0.shape[0], "cols": theta0.shape[1]}
        final_s, final_bases = _decompose(base, final, name, theta0, kmax, method)
        for label, ckpt in labelled.items():
            if ckpt.directory.resolve() == final_path:
                s, bases = final_s, final_bases
            else:
                s, bases = _decompose(base, ckpt, name, theta0, kmax, method)
            spectra_rows.append({"checkpoint": label, **ids, **spectrum_row(s, ks)})
            alignment_rows.append({"checkpoint": label, **ids,
                                   **alignment_row(bases, final_bases, k_list)})
    tables = pd.DataFrame(spectra_rows), pd.DataFrame(alignment_rows)
    for table in tables:
        if not table.empty:
            table["layer"] = table["layer"].astype("Int64")
    return tables

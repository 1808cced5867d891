"""The intervention recipes of the accuracy analyses (``effopd evaluate-*``).

Each recipe turns a series into :class:`~effopd.analysis.scoring.Candidate`
models built by :mod:`effopd.analysis.interventions` from theta_0 and an update,
scores them with :func:`effopd.analysis.scoring.score_candidates` and writes one
row per candidate:

- **scaling** (:func:`scaling_candidates`, :func:`run_scaling`): theta_0 + alpha * Delta
  of the final and an early checkpoint;
- **modules** (:func:`module_candidates`, :func:`run_modules`): theta_0 plus one part of
  the final update (layer windows, MLP, attention, embeddings);
- **rank-k** (:func:`rank_k_candidates`, :func:`run_rank_k`): theta_0 +
  alpha (||Delta|| / ||Delta_k||) Delta_k of the final update.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from effopd.analysis.checkpoint_io import block_matrix_names, tensor_shape
from effopd.analysis.interventions import (
    injected_update,
    is_attention,
    is_embedding,
    is_mlp,
    num_layers,
    rank_k_rescaled,
    scaled_update,
    sliding_windows,
)
from effopd.analysis.scoring import Candidate, EvalSettings, score_candidates
from effopd.analysis.series import Series
from effopd.analysis.settings import (
    EARLY_FRACTION,
    RANK_KS,
    SCALING_ALPHAS,
    WINDOW_SIZE,
    WINDOW_STRIDE,
)
from effopd.device import resolve_device
from effopd.io import write_csv
from effopd.tables import with_run

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def _alpha_label(alpha: float) -> str:
    return f"{alpha:g}".replace("-", "m")


def early_alpha_grid(early_fraction: float) -> list[float]:
    """The default alphas of the early checkpoint: 0, 0.5, 1, 2, 3, ... up to
    ceil(1 / early_fraction), so the grid reaches the scale at which an early update
    of about early_fraction of the final one would match it."""
    top = math.ceil(1 / early_fraction - 1e-9)
    return [0.0, 0.5, *map(float, range(1, top + 1))]


def scaling_candidates(series: Series, alphas: Sequence[float],
                       early_fraction: float = EARLY_FRACTION,
                       device: str = "cpu",
                       early_alphas: Sequence[float] | None = None) -> list[Candidate]:
    """theta_0 + alpha * Delta for the final checkpoint (``alphas``) and the early one
    (``early_alphas``, default :func:`early_alpha_grid`).

    alpha = 0 (theta_0) is scored once and reported for both; alpha = 1 of a
    checkpoint is the checkpoint itself (not rebuilt).
    """
    early = series.early_index(early_fraction)
    grids = {"final": alphas, "early": early_alpha_grid(early_fraction)
             if early_alphas is None else early_alphas}
    kinds = [("final", len(series.paths) - 1), ("early", early)]
    candidates = []
    for kind, index in kinds:
        for alpha in sorted(set(float(a) for a in grids[kind])):
            path = series.paths[index]
            info = {"kind": kind, **series.info(index), "alpha": alpha}
            if alpha == 0:
                candidates.append(Candidate("base", info, (series.base,), model=series.base))
            elif alpha == 1:
                candidates.append(Candidate(f"{kind}_a1", info, (path,), model=path))
            else:
                def build(out: Path, path: Path = path, alpha: float = alpha) -> Path:
                    return scaled_update(series.base, path, alpha, out, device=device,
                                         out_dtype=torch.float32, overwrite=True)
                candidates.append(Candidate(f"{kind}_a{_alpha_label(alpha)}", info,
                                            (series.base, path), build=build))
    return candidates


def _with_shared_scores(candidates: Sequence[Candidate], score: Callable[[Sequence[Candidate]],
                        pd.DataFrame]) -> pd.DataFrame:
    """Score candidates that share a label once, and give every candidate its row."""
    unique: dict[str, Candidate] = {}
    for candidate in candidates:
        unique.setdefault(candidate.label, candidate)
    scores = score(list(unique.values())).set_index("label")
    metric_columns = [c for c in scores.columns if c not in unique[next(iter(unique))].info]
    rows = [{**c.info, **scores.loc[c.label, metric_columns].to_dict(), "label": c.label}
            for c in candidates]
    return pd.DataFrame(rows)


def module_candidates(series: Series, window_size: int = WINDOW_SIZE,
                      window_stride: int = WINDOW_STRIDE, device: str = "cpu") -> list[Candidate]:
    """theta_0 plus one part of the final update: each layer window, MLP, attention, embeddings.

    Plus the references ``base`` (theta_0) and ``full`` (the final checkpoint).
    Windows: :func:`effopd.analysis.interventions.sliding_windows` with the size
    clipped to the number of layers.
    """
    final = series.final
    info = {**series.info(len(series.paths) - 1)}
    layers = num_layers(series.base)
    windows = sliding_windows(layers, min(window_size, layers), window_stride) if layers else []
    parts: list[tuple[str, str, Callable[[str], bool], dict[str, Any]]] = [
        (f"window_L{w.start:02d}-{w.start + w.size - 1:02d}", "window", w,
         {"start": w.start, "size": w.size}) for w in windows]
    parts += [("mlp", "module", is_mlp, {}), ("attention", "module", is_attention, {}),
              ("embedding", "module", is_embedding, {})]
    candidates = [
        Candidate("base", {**info, "intervention": "base", "kind": "reference"},
                  (series.base,), model=series.base),
        Candidate("full", {**info, "intervention": "full", "kind": "reference"},
                  (final,), model=final),
    ]
    for label, kind, select, extra in parts:
        def build(out: Path, select: Callable[[str], bool] = select) -> Path:
            return injected_update(series.base, final, out, select, device=device,
                                   out_dtype=torch.float32, overwrite=True)
        candidates.append(Candidate(label, {**info, "intervention": label, "kind": kind,
                                            "start": extra.get("start"),
                                            "size": extra.get("size")},
                                    (series.base, final), build=build))
    return candidates


def rank_k_candidates(series: Series, ks: Sequence[int] = RANK_KS, alpha: float = 1.0,
                      method: str = "gram", device: str = "cpu") -> list[Candidate]:
    """theta_0 + alpha (||Delta||/||Delta_k||) Delta_k of the final update for each k.

    Every other tensor stays theta_0 (the authors' ``upd_rank.py``). References:
    ``base`` (theta_0) and ``full`` (the full update of the 2-D block weights
    only, every other tensor theta_0: the limit k -> min(m, n)).
    """
    final = series.final
    info = series.info(len(series.paths) - 1)
    full_rank = max(min(tensor_shape(series.base, name)) for name in
                    block_matrix_names(series.base))  # rank_k_rescaled: k >= min(m, n) is Delta
    candidates = [
        Candidate("base", {**info, "variant": "base", "k": None, "alpha": alpha},
                  (series.base,), model=series.base),
        Candidate("full", {**info, "variant": "full", "k": None, "alpha": alpha},
                  (series.base, final),
                  build=lambda out: rank_k_rescaled(series.base, final, full_rank, alpha, out,
                                                    method=method, device=device,
                                                    out_dtype=torch.float32, overwrite=True)),
    ]
    for k in sorted(set(int(k) for k in ks)):
        def build(out: Path, k: int = k) -> Path:
            return rank_k_rescaled(series.base, final, k, alpha, out, method=method,
                                   device=device, out_dtype=torch.float32, overwrite=True)
        candidates.append(Candidate(f"rank_k{k}", {**info, "variant": "rank_k", "k": k,
                                                   "alpha": alpha},
                                    (series.base, final), build=build))
    return candidates


def run_scaling(series: Series, settings: EvalSettings, work_dir: PathLike, out_csv: PathLike,
                alphas: Sequence[float] = SCALING_ALPHAS, early_fraction: float = EARLY_FRACTION,
                keep_checkpoints: bool = False, early_alphas: Sequence[float] | None = None,
                selection: EvalSettings | None = None) -> pd.DataFrame:
    """Score the scaling curves (:func:`scaling_candidates`) and write ``out_csv``.

    With ``selection`` (a validation benchmark), the early checkpoint's candidates are
    also scored on it, in rows whose ``benchmark`` names it: the early-recovery table
    picks the best alpha there and reports it on ``settings``' benchmark, so the
    choice never sees the test problems.
    """
    device = str(resolve_device(settings.device))
    candidates = scaling_candidates(series, alphas, early_fraction, device, early_alphas)
    table = _with_shared_scores(
        candidates, lambda unique: score_candidates(unique, settings, work_dir, keep_checkpoints))
    if selection is not None:
        early = [c for c in candidates if c.info["kind"] == "early"]
        chosen = _with_shared_scores(early, lambda unique: score_candidates(
            unique, selection, Path(work_dir) / "selection", keep_checkpoints))
        table = pd.concat([table, chosen], ignore_index=True)
    return _write(table, series, out_csv)


def run_modules(series: Series, settings: EvalSettings, work_dir: PathLike, out_csv: PathLike,
                window_size: int = WINDOW_SIZE, window_stride: int = WINDOW_STRIDE,
                keep_checkpoints: bool = False) -> pd.DataFrame:
    """Score the module interventions (:func:`module_candidates`) and write ``out_csv``."""
    device = str(resolve_device(settings.device))
    candidates = module_candidates(series, window_size, window_stride, device)
    table = score_candidates(candidates, settings, work_dir, keep_checkpoints)
    table[["start", "size"]] = table[["start", "size"]].astype("Int64")
    return _write(table, series, out_csv)


def run_rank_k(series: Series, settings: EvalSettings, work_dir: PathLike, out_csv: PathLike,
               ks: Sequence[int] = RANK_KS, alpha: float = 1.0, method: str = "gram",
               keep_checkpoints: bool = False) -> pd.DataFrame:
    """Score the rank-k rescaled updates (:func:`rank_k_candidates`) and write ``out_csv``."""
    device = str(resolve_device(settings.device))
    largest = max(min(tensor_shape(series.base, name))
                  for name in block_matrix_names(series.base))
    kept = [k for k in ks if k < largest]
    if len(kept) < len(ks):
        log.warning("rank-k: k >= %d (the widest matrix's rank) equals the full update; "
                    "dropped %s", largest, sorted(set(ks) - set(kept)))
    candidates = rank_k_candidates(series, kept, alpha, method, device)
    table = score_candidates(candidates, settings, work_dir, keep_checkpoints)
    table["k"] = table["k"].astype("Int64")
    return _write(table, series, out_csv)


def _write(table: pd.DataFrame, series: Series, out_csv: PathLike) -> pd.DataFrame:
    """Write a recipe's table with the run's identity first (``series.run``); return it."""
    table = with_run(table, series.run)
    write_csv(table, out_csv)
    return table

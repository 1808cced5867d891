"""The checkpoint-series analyses end to end: checkpoints in, CSV files out (SPEC section 4).

What the ``effopd`` analysis subcommands call. Two families:

- Weight analyses (``effopd analyze``), streamed one tensor at a time in
  float32, on any base model and series of Hugging Face checkpoint
  directories (this package's runs, or a verl / TRL run converted to HF):

  ``update_norms.csv``       per checkpoint: ||Delta_t||_F over the block weights
                             (the SPEC's update size), over every tensor, and relative
                             to ||theta_0||_F of the block weights;
  ``module_allocation.csv``  per checkpoint and (layer, module type): ||Delta||_F,
                             ||theta_0||_F, relative norm and ``share`` = the
                             (layer, module)'s part of the checkpoint's squared
                             update norm over EVERY tensor (embeddings and head
                             included, so their share shows), summing to 1;
  ``spectra.csv``            per checkpoint and 2-D block weight: effective and
                             stable rank, top-k energy shares, rank-k norm ratios;
  ``alignment.csv``          per checkpoint and 2-D block weight: overlap of the
                             top-k singular subspaces with the final update's;
  ``embedding_cosine.csv``,  (with generations of the final checkpoint) cosine of
  ``embedding_projection.csv`` base vs trained input-embedding rows of the
                             generated tokens, and their 2-D PCA coordinates.

  Every table carries ``checkpoint`` (label), ``step`` and ``fraction`` =
  step / final step (empty when steps are unknown).

- Accuracy analyses (``effopd evaluate-scaling``, ``evaluate-modules``,
  ``evaluate-rank-k``): checkpoints built by :mod:`effopd.analysis.interventions`
  from theta_0 and an update, scored by :func:`effopd.evaluation.score_model`
  on (the first ``limit`` problems of) a prepared benchmark with ``n``
  samples each. All evaluations of one series run in one process; each built
  checkpoint is deleted once scored. Scores are cached in the work directory
  keyed by everything they depend on, so an interrupted job resumes.

Steps of a checkpoint directory are parsed from its path (``step_000050``,
``global_step_50/actor/huggingface``, ``checkpoint-50``) unless given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from effopd.analysis.checkpoint_io import block_matrix_names, open_checkpoint, tensor_shape
from effopd.analysis.embedding_shift import embedding_cosine, embedding_projection
from effopd.analysis.interventions import (
    cast_survival,
    injected_update,
    is_attention,
    is_embedding,
    is_mlp,
    num_layers,
    rank_k_rescaled,
    scaled_update,
    sliding_windows,
)
from effopd.analysis.series import (  # noqa: F401 (re-exported)
    Series,
    parse_step,
    series_from_dirs,
    series_from_index,
    unique_labels,
    verify_series,
)
from effopd.analysis.settings import (  # noqa: F401 (re-exported)
    ALIGNMENT_KS,
    EARLY_FRACTION,
    EVAL_LIMIT,
    EVAL_N,
    RANK_KS,
    SCALING_ALPHAS,
    SPECTRA_KS,
    WINDOW_SIZE,
    WINDOW_STRIDE,
)
from effopd.analysis.updates import update_norm_table
from effopd.analysis.weight_pass import series_tables
from effopd.device import resolve_device
from effopd.io import apply_limit, atomic_path, atomic_write_json, read_json, read_jsonl

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

# Defaults shared by the command line and the config schema's analysis block
# (tests/test_analysis_pipeline.py checks that the two agree).

# --------------------------------------------------------------------------- weight analyses


def allocation_rows(norms: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a per-tensor norm table by (layer, module): norms and share of the total.

    share = ||Delta_(layer, module)||_F^2 / sum over every tensor of ||Delta||_F^2.
    """
    table = norms.assign(delta_sq=norms["delta_norm"] ** 2, base_sq=norms["base_norm"] ** 2,
                         layer_key=norms["layer"].fillna(-1).astype(int))
    grouped = table.groupby(["layer_key", "module", "group"], sort=False).agg(
        n_tensors=("name", "size"), numel=("numel", "sum"), delta_sq=("delta_sq", "sum"),
        base_sq=("base_sq", "sum")).reset_index()
    total = grouped["delta_sq"].sum()
    grouped["layer"] = grouped["layer_key"].where(grouped["layer_key"] >= 0).astype("Int64")
    grouped["delta_norm"] = grouped["delta_sq"] ** 0.5
    grouped["base_norm"] = grouped["base_sq"] ** 0.5
    grouped["relative_norm"] = grouped["delta_norm"] / grouped["base_norm"].where(
        grouped["base_norm"] > 0)
    grouped["share"] = grouped["delta_sq"] / total if total > 0 else math.nan
    return grouped[["layer", "module", "group", "n_tensors", "numel", "delta_norm", "base_norm",
                    "relative_norm", "share"]]


def update_tables(series: Series, device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(update_norms, module_allocation)`` of every checkpoint (module docstring)."""
    sizes, allocations = [], []
    for index, path in enumerate(series.paths):
        norms = update_norm_table(series.base, path, device=device)
        block = norms[norms["block"]]
        block_sq = float((block["delta_norm"] ** 2).sum())
        block_base_sq = float((block["base_norm"] ** 2).sum())
        info = series.info(index)
        sizes.append({**info, "block_norm": math.sqrt(block_sq),
                      "total_norm": math.sqrt(float((norms["delta_norm"] ** 2).sum())),
                      "block_relative_norm": math.sqrt(block_sq / block_base_sq)
                      if block_base_sq > 0 else math.nan,
                      "embedding_norm": math.sqrt(float(
                          (norms.loc[norms["group"] == "embedding", "delta_norm"] ** 2).sum()))})
        allocation = allocation_rows(norms)
        for column, value in reversed(list(info.items())):
            allocation.insert(0, column, value)
        allocations.append(allocation)
    return pd.DataFrame(sizes), pd.concat(allocations, ignore_index=True)


def _with_steps(table: pd.DataFrame, series: Series) -> pd.DataFrame:
    """Insert step and fraction after the ``checkpoint`` column of a series table."""
    infos = {series.labels[i]: series.info(i) for i in range(len(series.paths))}
    table = table.copy()
    table.insert(1, "step", [infos[c]["step"] for c in table["checkpoint"]])
    table.insert(2, "fraction", [infos[c]["fraction"] for c in table["checkpoint"]])
    table["step"] = table["step"].astype("Int64")
    return table


def final_samples_file(samples: PathLike, final_step: int | None) -> Path:
    """A samples JSONL, or in a directory of ``step_XXXXXX.jsonl`` the final step's file."""
    path = Path(samples)
    if path.is_file():
        return path
    if path.is_dir():
        if final_step is None:
            raise ValueError(f"{path}: a samples directory needs the final checkpoint's step")
        target = path / f"step_{final_step:06d}.jsonl"
        if not target.is_file():
            raise FileNotFoundError(f"{target}: no generations of the final step {final_step}")
        return target
    raise FileNotFoundError(f"{path}: no such samples file or directory")


def generated_token_ids(samples_jsonl: PathLike, tokenizer_dir: PathLike) -> np.ndarray:
    """Unique token ids of the ``response`` texts, tokenized by the checkpoint's tokenizer.

    As the authors: the ids of everything the model generated on the
    evaluation set, each id once. Empty when no response has a token.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    ids: set[int] = set()
    for row in read_jsonl(samples_jsonl):
        text = row.get("response") or ""
        if text:
            ids.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return np.array(sorted(ids), dtype=np.int64)


EMBEDDING_COLUMNS = ["token_id", "cosine", "base_norm", "trained_norm", "shift_norm"]
PROJECTION_COLUMNS = ["token_id", "source", "x", "y"]


def embedding_tables(series: Series, samples: PathLike,
                     device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-token cosine and 2-D PCA coordinates of base vs final embedding rows.

    Tokens: :func:`generated_token_ids` of the final checkpoint's generations.
    Both tables are empty (with their columns) when nothing was generated.
    """
    samples_file = final_samples_file(samples, series.final_step)
    ids = generated_token_ids(samples_file, series.final)
    if ids.size == 0:
        log.warning("%s: no generated tokens; embedding tables left empty", samples_file)
        return pd.DataFrame(columns=EMBEDDING_COLUMNS), pd.DataFrame(columns=PROJECTION_COLUMNS)
    cosine = embedding_cosine(series.base, series.final, ids, device=device)
    projection = embedding_projection(series.base, series.final, ids, device=device)
    ratio = projection.attrs["explained_variance_ratio"]
    projection = projection.assign(explained_x=ratio[0], explained_y=ratio[1])
    return cosine, projection


def write_csv(table: pd.DataFrame, path: PathLike) -> Path:
    """Write one table as CSV, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def analyze_series(series: Series, out_dir: PathLike, ks: Sequence[int] = SPECTRA_KS,
                   alignment_ks: Sequence[int] = ALIGNMENT_KS, method: str = "gram",
                   samples: PathLike | None = None, device: str = "cpu",
                   progress: bool = False) -> dict[str, Path]:
    """Write the weight-analysis tables of a series into ``out_dir``; return name -> path."""
    device = str(resolve_device(device))
    out = Path(out_dir)
    written = {}
    sizes, allocation = update_tables(series, device)
    written["update_norms"] = write_csv(sizes, out / "update_norms.csv")
    written["module_allocation"] = write_csv(allocation, out / "module_allocation.csv")
    log.info("update norms of %d checkpoints written", len(series.paths))
    spectra, alignment = series_tables(series.base, dict(zip(series.labels, series.paths,
                                                             strict=True)),
                                       series.final, ks=ks, k_list=alignment_ks, method=method,
                                       device=device, progress=progress)
    written["spectra"] = write_csv(_with_steps(spectra, series), out / "spectra.csv")
    written["alignment"] = write_csv(_with_steps(alignment, series), out / "alignment.csv")
    log.info("spectra and alignment of %d matrices x %d checkpoints written",
             len(block_matrix_names(series.base)), len(series.paths))
    if samples is not None:
        cosine, projection = embedding_tables(series, samples, device)
        written["embedding_cosine"] = write_csv(cosine, out / "embedding_cosine.csv")
        written["embedding_projection"] = write_csv(projection, out / "embedding_projection.csv")
        if not cosine.empty:
            log.info("embedding shift: mean cosine %.6f over %d tokens",
                     cosine["cosine"].mean(), len(cosine))
    return written


# --------------------------------------------------------------------------- accuracy analyses


@dataclass(frozen=True)
class EvalSettings:
    """How every built checkpoint is scored: the config's prompt, generation and grading
    blocks, with ``n`` samples on the first ``limit`` problems (None: all) of a benchmark."""

    benchmark: Path
    prompt: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    grading: dict[str, Any] = field(default_factory=dict)
    pass_k: tuple[int, ...] = (1,)
    limit: int | None = EVAL_LIMIT
    n: int = EVAL_N
    device: str = "auto"
    isolate: bool | None = None
    min_cast_survival: float = 0.0

    def evaluation_dtype(self) -> torch.dtype:
        """The dtype the weights are scored in: the generation block's ``dtype``.

        ``auto``: with vLLM float16 for a float32 checkpoint (vLLM's documented
        rule: FP16 for FP32 and FP16 models), with transformers bfloat16 on GPU
        and float32 on CPU (:func:`effopd.generation.resolve_dtype`).
        """
        from effopd.generation import resolve_dtype

        name = self.generation.get("dtype", "auto")
        if name == "auto" and self.generation.get("backend") == "vllm":
            return torch.float16
        return resolve_dtype(name, resolve_device(self.device))

    @property
    def in_subprocess(self) -> bool:
        """Score each model in a fresh process: by default with vLLM, whose engine does not
        hand the GPU back within a process (``isolate`` overrides)."""
        if self.isolate is not None:
            return self.isolate
        return self.generation.get("backend") == "vllm"

    @property
    def generation_block(self) -> dict[str, Any]:
        return {**self.generation, "n": self.n}

    @property
    def score_device(self) -> str | None:
        """score_model's device: None lets it pick CUDA when present."""
        return None if self.device == "auto" else self.device

    def key(self) -> dict[str, Any]:
        from effopd.provenance import sha256_file

        return {"benchmark_sha256": sha256_file(self.benchmark), "prompt": self.prompt,
                "generation": self.generation_block, "grading": self.grading,
                "pass_k": list(self.pass_k), "limit": self.limit}


def limited_benchmark(settings: EvalSettings, work_dir: PathLike) -> Path:
    """The benchmark cut to its first ``limit`` problems, written under ``work_dir``.

    Keeps the benchmark's file name (so metrics name it) and writes its
    manifest beside it with ``n_problems`` and ``limit`` updated.
    """
    from effopd.evaluation import manifest_path
    from effopd.io import atomic_write_jsonl

    rows = read_jsonl(settings.benchmark)
    if not rows:
        raise ValueError(f"{settings.benchmark}: no problems")
    kept = apply_limit(rows, settings.limit, f"{settings.benchmark} (limit)")
    target = Path(work_dir) / settings.benchmark.name
    atomic_write_jsonl(target, kept)
    source = manifest_path(settings.benchmark)
    manifest = read_json(source) if source.exists() else {}
    atomic_write_json(manifest_path(target), {**manifest, "n_problems": len(kept),
                                              "limit": settings.limit,
                                              "source_file": str(settings.benchmark)})
    return target


@dataclass(frozen=True)
class Candidate:
    """One model to score: an existing directory, or a ``build(out_dir) -> dir`` recipe.

    ``info`` goes into the result row; ``sources`` are the checkpoints it is
    built from (their weight files' sizes and times enter the cache key).
    """

    label: str
    info: dict[str, Any]
    sources: tuple[Path, ...]
    model: Path | None = None
    build: Callable[[Path], Path] | None = None


def _stamp(ckpt: Path) -> list[tuple[str, int, int]]:
    checkpoint = open_checkpoint(ckpt)
    return [(name, (checkpoint.directory / name).stat().st_size,
             (checkpoint.directory / name).stat().st_mtime_ns) for name in checkpoint.files]


# The code that builds and scores a candidate: a change to any of them invalidates its
# cached score (with the package version; see effopd.provenance.code_digest).
SCORING_MODULES = ("analysis/checkpoint_io.py", "analysis/interventions.py",
                   "analysis/pipeline.py", "evaluation.py", "generation.py", "grading.py",
                   "metrics.py", "prompts.py")


def _cache_key(candidate: Candidate, settings: EvalSettings) -> str:
    """sha256 of what a cached score depends on: the candidate (label, info, its sources'
    weight files), the evaluation settings (benchmark sha256, prompt, generation,
    grading, pass_k, limit) and the code version of :data:`SCORING_MODULES`."""
    from effopd.provenance import code_digest

    key = {"label": candidate.label, "info": candidate.info, "settings": settings.key(),
           "sources": {str(s): _stamp(s) for s in candidate.sources},
           "code": code_digest(SCORING_MODULES)}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def check_cast_survival(candidate: Candidate, built: Path, settings: EvalSettings) -> float:
    """The fraction of the built candidate's changed elements that survive the evaluation
    dtype (:func:`effopd.analysis.interventions.cast_survival` against its first source,
    theta_0); a ``ValueError`` when it is below ``settings.min_cast_survival``."""
    dtype = settings.evaluation_dtype()
    if dtype == torch.float32:
        return 1.0
    survival = cast_survival(candidate.sources[0], built, dtype)
    if survival["fraction"] < settings.min_cast_survival:
        raise ValueError(
            f"intervention {candidate.label!r}: only {survival['surviving']} of the "
            f"{survival['changed']} elements it changes ({survival['fraction']:.1%}) survive the "
            f"cast to the evaluation dtype {str(dtype).removeprefix('torch.')}, below "
            f"analysis.min_cast_survival = {settings.min_cast_survival}; score interventions "
            "in float32 (generation.dtype: float32) or lower the threshold")
    return survival["fraction"]


def score_candidates(candidates: Sequence[Candidate], settings: EvalSettings,
                     work_dir: PathLike, keep_checkpoints: bool = False) -> pd.DataFrame:
    """Build (if needed), score and delete each candidate; one row per candidate.

    Row: the candidate's ``info``, then score_model's metrics (avg@n, pass@k,
    n, ...). Under ``work_dir``: ``checkpoints/<label>`` while it is scored,
    ``samples/<label>.jsonl`` (per-sample grades) and ``scores/<label>.json``
    (the cache: reused when its key still matches).
    """
    from effopd.evaluation import score_model
    from effopd.io import atomic_write_jsonl

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    benchmark = limited_benchmark(settings, work)
    rows = []
    for number, candidate in enumerate(candidates, start=1):
        cache = work / "scores" / f"{candidate.label}.json"
        key = _cache_key(candidate, settings)
        if cache.exists() and read_json(cache).get("key") == key:
            metrics = read_json(cache)["metrics"]
            log.info("[%d/%d] %s: cached avg@n = %.3f", number, len(candidates),
                     candidate.label, metrics["avg@n"])
        else:
            model = candidate.model
            built = None
            if model is None:
                if candidate.build is None:
                    raise ValueError(f"candidate {candidate.label!r} has neither model nor build")
                built = model = candidate.build(work / "checkpoints" / candidate.label)
                survival = check_cast_survival(candidate, built, settings)
            arguments = (model, benchmark, candidate.label, settings.prompt,
                         settings.generation_block, settings.grading, list(settings.pass_k),
                         settings.score_device)
            try:
                if settings.in_subprocess:
                    context = multiprocessing.get_context("spawn")
                    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                        metrics, graded = pool.submit(score_model, *arguments).result()
                else:
                    metrics, graded = score_model(*arguments)
            finally:
                if built is not None and not keep_checkpoints:
                    shutil.rmtree(built, ignore_errors=True)
            if built is not None:
                metrics = {**metrics, "cast_survival": survival}
            atomic_write_jsonl(work / "samples" / f"{candidate.label}.jsonl", graded)
            atomic_write_json(cache, {"key": key, "metrics": metrics})
            log.info("[%d/%d] %s: avg@n = %.3f", number, len(candidates), candidate.label,
                     metrics["avg@n"])
        scores = {("sampling_seed" if k == "seed" else k): v for k, v in metrics.items()
                  if k != "model"}
        rows.append({**candidate.info, **scores, "label": candidate.label})
    if not keep_checkpoints:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return pd.DataFrame(rows)


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
    write_csv(table, out_csv)
    return table


def run_modules(series: Series, settings: EvalSettings, work_dir: PathLike, out_csv: PathLike,
                window_size: int = WINDOW_SIZE, window_stride: int = WINDOW_STRIDE,
                keep_checkpoints: bool = False) -> pd.DataFrame:
    """Score the module interventions (:func:`module_candidates`) and write ``out_csv``."""
    device = str(resolve_device(settings.device))
    candidates = module_candidates(series, window_size, window_stride, device)
    table = score_candidates(candidates, settings, work_dir, keep_checkpoints)
    table[["start", "size"]] = table[["start", "size"]].astype("Int64")
    write_csv(table, out_csv)
    return table


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
    write_csv(table, out_csv)
    return table

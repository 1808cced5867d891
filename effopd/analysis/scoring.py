"""The scoring service of the accuracy analyses: build a candidate, score it, cache it.

- :class:`EvalSettings`: how every built checkpoint is scored (the config's
  prompt, generation and grading blocks, ``n`` samples on the first ``limit``
  problems of a prepared benchmark), and in which dtype and process;
- :class:`Candidate`: one model to score, an existing directory or a
  ``build(out_dir)`` recipe (:mod:`effopd.analysis.recipes` makes them);
- :func:`score_candidates`: build, check that the intervention survives the cast
  to the evaluation dtype (:func:`check_cast_survival`), score with
  :func:`effopd.evaluation.score_model` (in a fresh process with vLLM), delete
  the built checkpoint, and cache the score in the work directory under a key of
  everything it depends on (:func:`_cache_key`), so an interrupted job resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from effopd.analysis.checkpoint_io import open_checkpoint
from effopd.analysis.interventions import cast_survival
from effopd.analysis.settings import EVAL_LIMIT, EVAL_N
from effopd.device import resolve_device
from effopd.io import apply_limit, atomic_write_json, read_json, read_jsonl

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


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
                   "analysis/recipes.py", "analysis/scoring.py", "evaluation.py",
                   "generation.py", "grading.py", "metrics.py", "prompts.py")


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
    from effopd.evaluation import sampling_named, score_model
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
        scores = {k: v for k, v in sampling_named(metrics).items() if k != "model"}
        rows.append({**candidate.info, **scores, "label": candidate.label})
    if not keep_checkpoints:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)
    return pd.DataFrame(rows)

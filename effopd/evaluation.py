"""Evaluation: prepared benchmark in, per-sample grades and one metrics row out.

Protocol (SPEC section 5): each problem is rendered as the problem followed by
the instruction inside the model's chat template; ``n`` responses are sampled
per problem; each is graded by math-verify (gold first, prediction from its
last ``\\boxed{}``) in worker processes with a hard timeout, or, for a code
benchmark (problems with tests: :mod:`effopd.data.code_benchmarks`), by running its
program against the tests in the sandbox of :mod:`effopd.code_grading`. Metrics: avg@n,
the mean correctness over all samples, and the unbiased pass@k. Every metrics
row records n, k, the sampling settings and the benchmark's revision and hash.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import AutoTokenizer

from effopd.code_grading import (
    Limits,
    grade_programs,
    grade_programs_batched,
    summarize_code_grades,
)
from effopd.data.benchmarks import load_benchmark
from effopd.errors import InputError
from effopd.generation import SamplingSpec, generate
from effopd.grading import grade_records
from effopd.io import (
    apply_limit,
    atomic_path,
    atomic_write_json,
    atomic_write_jsonl,
    read_json,
    read_jsonl,
    require_keys,
    write_table,
)
from effopd.metrics import problems_csv, summarize_grades
from effopd.models.checkpoint import verify_checkpoint
from effopd.prompts import DEFAULT_INSTRUCTION, render_prompt
from effopd.provenance import sha256_file
from effopd.tables import CHECKPOINT_INDEX, read_table, run_identity

log = logging.getLogger(__name__)


def manifest_path(benchmark_file: str | Path) -> Path:
    """The manifest written beside a prepared benchmark: ``<name>.manifest.json``."""
    path = Path(benchmark_file)
    return path.with_name(path.stem + ".manifest.json")


def prepare_benchmark(spec: dict[str, Any], out: str | Path,
                      task_file: str | Path | None = None) -> int:
    """Write a benchmark as JSONL lines ``{id, problem, answer}`` plus a manifest.

    ``source: task`` reads a split of the tiny task (``task_file``); ``hub`` and
    ``jsonl`` go through :func:`effopd.data.benchmarks.load_benchmark`. An empty or
    unreadable source fails here, naming the file.
    """
    if spec["source"] == "task":
        if task_file is None:
            raise ValueError("prepare-benchmark: source 'task' needs --task-file")
        try:
            task_rows = read_jsonl(task_file)
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"{task_file}: unreadable benchmark source ({err})") from err
        for number, row in enumerate(task_rows, start=1):
            missing = [k for k in ("id", "question", "answer") if row.get(k) is None]
            if missing:
                raise InputError(f"{task_file}: problem {number} has no {missing}")
        # a code task's problems keep their hidden tests and no answer (graded by running)
        rows = [{"id": row["id"], "problem": row["question"], "test": row["test"],
                 "entry_point": row.get("entry_point")} if "test" in row else
                {"id": row["id"], "problem": row["question"], "answer": str(row["answer"])}
                for row in apply_limit(task_rows, spec.get("limit"), str(task_file))]
        origin = {"source": "task", "split": spec["split"], "task_file_sha256":
                  sha256_file(task_file)}
    else:
        rows = load_benchmark(spec)
        origin = {key: spec.get(key) for key in ("source", "repo_id", "revision", "subset",
                                                 "split", "path") if spec.get(key) is not None}
        if spec["source"] in CODE_SOURCES:
            origin.update({key: spec[key] for key in CODE_ORIGIN_KEYS if key in spec},
                          grader="code")
    if not rows:
        source = task_file if spec["source"] == "task" else spec.get("path") or \
            spec.get("repo_id") or spec.get("dataset")
        raise InputError(f"{source}: empty benchmark (no problems); {out} not written")
    count = atomic_write_jsonl(out, rows)
    atomic_write_json(manifest_path(out), {**origin, "n_problems": count,
                                           "sha256": sha256_file(out)})
    log.info("prepared %d problems into %s", count, out)
    return count


CODE_SOURCES = ("evalplus", "lcb")
CODE_ORIGIN_KEYS = ("dataset", "version", "release", "date_from", "date_to")


def is_code_benchmark(problems: list[dict[str, Any]]) -> bool:
    """Whether prepared problems are graded by running programs (they carry ``test`` or
    ``stdio`` and no ``answer``) rather than by math-verify."""
    return "answer" not in problems[0] and ("test" in problems[0] or "stdio" in problems[0])


def benchmark_manifest(benchmark_file: str | Path) -> dict[str, Any]:
    """A prepared benchmark's manifest (revision, sha256), or {} for a file without one."""
    path = manifest_path(benchmark_file)
    return read_json(path) if path.exists() else {}


def score_model(model_dir: str | Path, benchmark_file: str | Path, label: str,
                prompt: dict[str, Any], generation: dict[str, Any], grading: dict[str, Any],
                pass_k: list[int], device: str | None = None
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Sample, grade and score ``model_dir`` on a prepared benchmark.

    Returns the metrics row and the per-sample grades (problem_id, sample,
    gold, response, extracted, correct, status). The model is verified first
    (sizes and sha256 against its manifest, safetensors headers).
    """
    benchmark = Path(benchmark_file).stem
    verify_checkpoint(model_dir, sha256=True)
    problems = require_keys(read_jsonl(benchmark_file), ("id", "problem"), benchmark_file)
    if not problems:
        raise ValueError(f"{benchmark_file}: no problems")
    if not is_code_benchmark(problems):  # math: every row needs its gold answer
        require_keys(problems, ("answer",), benchmark_file)
    spec = SamplingSpec.from_config(generation)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    prompts = [render_prompt(tokenizer, p["problem"], prompt.get("instruction",
                             DEFAULT_INSTRUCTION), prompt.get("enable_thinking", False))
               for p in problems]
    start = time.perf_counter()
    responses = generate(model_dir, prompts, spec, [p["id"] for p in problems],
                         device=device)
    generation_s = time.perf_counter() - start
    ks = [k for k in pass_k if k <= spec.n]
    start = time.perf_counter()
    if is_code_benchmark(problems):
        graded, summary = grade_code(problems, responses, grading, ks)
    else:
        records = [{"problem_id": problem["id"], "sample": index, "gold": problem["answer"],
                    "response": text}
                   for problem, texts in zip(problems, responses, strict=True)
                   for index, text in enumerate(texts)]
        graded = grade_records(records, timeout_s=grading.get("timeout_s", 5.0),
                               workers=grading.get("workers", 2))
        summary = summarize_grades(pd.DataFrame(graded), ks)
    grading_s = time.perf_counter() - start
    manifest = benchmark_manifest(benchmark_file)
    metrics = {
        "model": label, "benchmark": benchmark, **summary,
        "n": spec.n, "temperature": spec.temperature, "top_p": spec.top_p,
        "max_new_tokens": spec.max_new_tokens, "seed": spec.seed, "backend": spec.backend,
        "benchmark_revision": manifest.get("revision"),
        "benchmark_sha256": manifest.get("sha256"),
        "generation_s": round(generation_s, 2), "grading_s": round(grading_s, 2),
    }
    log.info("%s on %s: avg@%d = %.3f", label, benchmark, spec.n, summary["avg@n"])
    return metrics, graded


def grade_code(problems: list[dict[str, Any]], responses: list[list[str]],
               grading: dict[str, Any], ks: list[int]
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every response's program against its problem's tests in the sandbox
    (:func:`effopd.code_grading.grade_programs`, ``grading.timeout_s`` per run and
    ``grading.workers`` at a time; with ``grading.batch_size`` > 1, assert-mode items
    ``batch_size`` to a run, :func:`effopd.code_grading.grade_programs_batched`).
    Returns the per-sample rows (problem_id, sample, response, code, status, reason,
    ..., correct = passed; the tests are left out) and
    the summary: avg@n, unbiased pass@k and a count per status."""
    records = [{"problem_id": problem["id"], "sample": index, "response": text,
                **{key: problem[key] for key in ("test", "stdio", "entry_point")
                   if key in problem}}
               for problem, texts in zip(problems, responses, strict=True)
               for index, text in enumerate(texts)]
    if grading.get("batch_size", 1) > 1:  # assert tests batch_size to a sandbox run
        rows = grade_programs_batched(records, Limits(timeout_s=grading["timeout_s"]),
                                      workers=grading["workers"],
                                      batch_size=grading["batch_size"])
    else:
        rows = grade_programs(records, Limits(timeout_s=grading["timeout_s"]),
                              workers=grading["workers"])
    graded = [{**{k: v for k, v in row.items() if k not in ("test", "stdio")},
               "correct": row["status"] == "passed"} for row in rows]
    return graded, summarize_code_grades(rows, ks)


def evaluate_model(model_dir: str | Path, benchmark_file: str | Path, label: str,
                   prompt: dict[str, Any], generation: dict[str, Any],
                   grading: dict[str, Any], pass_k: list[int], samples_out: str | Path,
                   metrics_out: str | Path, device: str | None = None) -> dict[str, Any]:
    """Score one model (see :func:`score_model`); write the grades (JSONL) and metrics (JSON)."""
    metrics, graded = score_model(model_dir, benchmark_file, label, prompt, generation,
                                  grading, pass_k, device)
    atomic_write_jsonl(samples_out, graded)
    atomic_write_json(metrics_out, metrics)
    return metrics


SAMPLING_KEYS = ("n", "temperature", "top_p", "max_new_tokens", "seed", "backend")


def reuse_scores(samples_jsonl: str | Path, metrics_json: str | Path, benchmark_file: str | Path,
                 generation: dict[str, Any], label: str
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Another job's scores of the same model (grades JSONL + metrics JSON), relabelled.

    Refused, naming the key, unless they were sampled with these settings
    (:data:`SAMPLING_KEYS`) on this benchmark (same sha256), so a reused score is
    the score this job would have computed.
    """
    metrics = read_json(metrics_json)
    spec = SamplingSpec.from_config(generation)
    manifest = benchmark_manifest(benchmark_file)
    expected = {**{key: getattr(spec, key) for key in SAMPLING_KEYS},
                "benchmark_sha256": manifest.get("sha256")}
    for key, value in expected.items():
        if metrics.get(key) != value:
            raise InputError(f"{metrics_json}: {key} = {metrics.get(key)!r}, but this "
                             f"evaluation uses {value!r}; these scores cannot stand in for it")
    return {**metrics, "model": label}, read_jsonl(samples_jsonl)


def evaluate_series(index_csv: str | Path, base_model: str | Path, benchmark_file: str | Path,
                    label: str, prompt: dict[str, Any], generation: dict[str, Any],
                    grading: dict[str, Any], pass_k: list[int], out_csv: str | Path,
                    samples_dir: str | Path, device: str | None = None,
                    base_scores: tuple[str | Path, str | Path] | None = None,
                    steps: list[int] | None = None) -> pd.DataFrame:
    """Score the base model (step 0) and every checkpoint of a training run's index.

    The index is the trainer's ``checkpoints.csv`` (method, seed, step, path, wall_s).
    Writes one row per step to ``out_csv`` (the run's method and training seed first, the
    sampling seed as ``sampling_seed``: :func:`sampling_named`) and each step's grades to
    ``samples_dir/step_<k>.jsonl``, and the number of correct samples of every
    problem at every step to ``<out_csv stem>.problems.csv`` (columns step, n, then
    one per problem id; small, committed with the results: the speed-up's bootstrap
    over problems reads it). One process scores the whole series; with
    vLLM, :func:`effopd.generation.generate` runs each checkpoint's generation
    in a fresh process, so the GPU is freed between checkpoints. ``base_scores``
    (grades JSONL, metrics JSON) of the base model on this benchmark with these
    sampling settings stand in for step 0 (:func:`reuse_scores`): same model, same
    seed, same samples. ``steps``: score only these steps of the index (the grid all
    methods share; EffOPD's extra checkpoints after each search are then skipped); a
    grid step missing from the index is an error.
    """
    index = read_table(index_csv, CHECKPOINT_INDEX)
    method, seed = run_identity(index, index_csv)
    if steps is not None:
        missing = sorted(set(steps) - set(index["step"]))
        if missing:
            raise ValueError(f"{index_csv}: no checkpoint at grid step(s) {missing}")
        index = index[index["step"].isin(steps)]
    models = [(0, str(base_model), 0.0)] + list(index[["step", "path", "wall_s"]]
                                                 .itertuples(index=False, name=None))
    rows, per_problem = [], []
    for step, path, wall_s in models:
        if step == 0 and base_scores is not None:
            metrics, graded = reuse_scores(*base_scores, benchmark_file, generation,
                                           f"{label}/step_0")
        else:
            metrics, graded = score_model(path, benchmark_file, f"{label}/step_{step}",
                                          prompt, generation, grading, pass_k, device)
        atomic_write_jsonl(Path(samples_dir) / f"step_{int(step):06d}.jsonl", graded)
        rows.append({"method": method, "seed": seed, "step": int(step),
                     "train_wall_s": float(wall_s), **sampling_named(metrics)})
        per_problem.append(correct_per_problem(graded, int(step), metrics["n"]))
    table = pd.DataFrame(rows)
    with atomic_path(problems_csv(out_csv)) as tmp:
        pd.DataFrame(per_problem).to_csv(tmp, index=False)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    return table


def sampling_named(metrics: dict[str, Any]) -> dict[str, Any]:
    """A model's metrics for a table that also names a training seed: the sampling seed
    (``seed`` of :func:`score_model`) as ``sampling_seed``, in its place."""
    return {("sampling_seed" if key == "seed" else key): value for key, value in metrics.items()}


def correct_per_problem(graded: list[dict[str, Any]], step: int, n: int) -> dict[str, Any]:
    """One row of the per-problem file: step, n, and each problem's number of correct samples
    (problems in their benchmark order)."""
    counts: dict[str, int] = {}
    for record in graded:
        counts[str(record["problem_id"])] = counts.get(str(record["problem_id"]), 0) \
            + bool(record["correct"])
    return {"step": step, "n": n, **counts}


METRIC_ORDER = ["model", "benchmark", "avg@n", "n_problems", "n", "temperature", "top_p",
                "max_new_tokens", "seed", "backend", "n_no_answer", "n_timeout", "n_error",
                "generation_s", "grading_s", "benchmark_revision", "benchmark_sha256"]


def tabulate_metrics(metric_files: list[str | Path], out_csv: str | Path) -> pd.DataFrame:
    """Collect metrics JSON rows into one table (CSV + Markdown), one row per file.

    Columns: model, benchmark, avg@n, pass@k (by k), then the sampling settings
    and provenance every number is reported with.
    """
    table = pd.DataFrame([read_json(path) for path in metric_files])
    pass_cols = sorted((c for c in table.columns if c.startswith("pass@")),
                       key=lambda c: int(c.split("@")[1]))
    ordered = METRIC_ORDER[:3] + pass_cols + METRIC_ORDER[3:]
    rest = [c for c in table.columns if c not in ordered]
    table = table[[c for c in ordered if c in table.columns] + rest]
    write_table(table, out_csv)
    return table

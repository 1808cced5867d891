"""Benchmark loaders: a config block in, a list of ``{"id", "problem", "answer"}`` out.

Two sources (SPEC section 5 names the benchmarks):

- ``jsonl``: a local JSON-lines file, ``{"source": "jsonl", "path": ...}``.
- ``hub``: ``datasets.load_dataset(repo_id, name=subset, split=split, revision=revision)``,
  ``{"source": "hub", "repo_id": ..., "revision": ..., "split": ..., "subset": ...}``.
  ``revision`` is required (every reported number records the data's revision) unless
  ``repo_id`` is a local directory of data files.

Two code sources return problems with tests instead of an answer
(:mod:`effopd.data.code_benchmarks`): ``evalplus`` (HumanEval+ / MBPP+ releases) and
``lcb`` (LiveCodeBench).

``jsonl`` and ``hub`` take ``problem_key`` (default ``"problem"``), ``answer_key``
(default ``"answer"``), ``id_key`` (default None: ids are the row indices ``"0"``,
``"1"``, ...) and ``limit`` (default None: keep the first ``limit`` problems).
Answers are converted to ``str``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effopd.data.code_benchmarks import load_evalplus, load_lcb
from effopd.io import apply_limit, read_jsonl


def load_benchmark(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Load the benchmark described by the config block ``spec``."""
    source = spec.get("source")
    if source == "evalplus":
        return load_evalplus(spec)
    if source == "lcb":
        return load_lcb(spec)
    if source == "jsonl":
        where = str(spec["path"])
        rows = read_jsonl(where)
    elif source == "hub":
        where, rows = _load_hub(spec)
    else:
        raise ValueError(f"unknown benchmark source {source!r} "
                         "(expected 'jsonl', 'hub', 'evalplus' or 'lcb')")
    rows = apply_limit(rows, spec.get("limit"), where)
    return _to_problems(rows, where, spec.get("problem_key", "problem"),
                        spec.get("answer_key", "answer"), spec.get("id_key"))


def _load_hub(spec: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Rows of a Hugging Face dataset (or of a local directory of data files)."""
    import datasets  # heavy import, only for this source

    repo_id, revision = spec["repo_id"], spec.get("revision")
    if revision is None and not Path(repo_id).is_dir():
        raise ValueError(f"hub benchmark {repo_id!r} needs a pinned 'revision' (a commit sha)")
    where = f"{repo_id}@{revision}" if revision else repo_id
    dataset = datasets.load_dataset(repo_id, name=spec.get("subset"),
                                    split=spec.get("split", "train"), revision=revision)
    return where, dataset.to_list()


def _to_problems(rows: list[dict[str, Any]], where: str, problem_key: str, answer_key: str,
                 id_key: str | None) -> list[dict[str, str]]:
    """Map raw rows to ``{"id", "problem", "answer"}``; check keys and unique ids."""
    problems = []
    for index, row in enumerate(rows):
        for key in (problem_key, answer_key, id_key):
            if key is not None and key not in row:
                raise ValueError(f"{where}: row {index} has no key {key!r} "
                                 f"(available: {sorted(row)})")
        if row[answer_key] is None:
            raise ValueError(f"{where}: row {index} has an empty answer ({answer_key!r})")
        problems.append({"id": str(row[id_key]) if id_key is not None else str(index),
                         "problem": str(row[problem_key]),
                         "answer": str(row[answer_key])})
    ids = [p["id"] for p in problems]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{where}: id {duplicate!r} occurs more than once ({id_key!r})")
    return problems

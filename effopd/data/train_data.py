"""Training prompts for the paper-scale runs: DeepMath-103K filtered by difficulty.

The authors train on DeepMath-103K rows of difficulty >= 6 (SPEC section 2).
The output is JSONL lines ``{id, question, answer}``, the format the local
trainer reads (the tiny task's train split has the same keys).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from effopd.io import apply_limit, atomic_write_json, atomic_write_jsonl
from effopd.provenance import sha256_file

log = logging.getLogger(__name__)


def filter_rows(rows: list[dict[str, Any]], spec: dict[str, Any], where: str
                ) -> list[dict[str, str]]:
    """Keep rows with ``difficulty_key >= min_difficulty``; map to ``{id, question, answer}``."""
    problem_key, answer_key = spec["problem_key"], spec["answer_key"]
    difficulty_key, minimum = spec.get("difficulty_key"), spec.get("min_difficulty")
    if (difficulty_key is None) != (minimum is None):
        raise ValueError(f"training.data: set both difficulty_key and min_difficulty ({where})")
    kept = []
    for index, row in enumerate(rows):
        for key in (problem_key, answer_key) + ((difficulty_key,) if difficulty_key else ()):
            if key not in row:
                raise ValueError(f"{where}: row {index} has no {key!r} "
                                 f"(columns: {sorted(row)})")
        if difficulty_key and float(row[difficulty_key]) < minimum:
            continue
        kept.append({"id": str(index), "question": str(row[problem_key]),
                     "answer": str(row[answer_key])})
    return apply_limit(kept, spec.get("limit"), f"{where} (training.data.limit)")


def prepare_train_data(spec: dict[str, Any], out: str | Path) -> int:
    """Load the ``training.data`` source, filter it, write JSONL and a manifest beside it."""
    if spec["source"] == "hub":
        import datasets  # heavy; only this source needs it

        where = f"{spec['repo_id']}@{spec['revision']}"
        rows = datasets.load_dataset(spec["repo_id"], name=spec.get("subset"),
                                     split=spec["split"], revision=spec["revision"]).to_list()
    elif spec["source"] == "jsonl":
        from effopd.io import read_jsonl

        where, rows = spec["path"], read_jsonl(spec["path"])
    else:
        raise ValueError(f"prepare-train-data: source {spec['source']!r} needs no preparation")
    kept = filter_rows(rows, spec, where)
    count = atomic_write_jsonl(out, kept)
    out = Path(out)
    atomic_write_json(out.with_name(out.stem + ".manifest.json"),
                      {**{k: spec.get(k) for k in ("source", "repo_id", "revision", "split",
                                                   "min_difficulty")},
                       "n_rows_in": len(rows), "n_rows_kept": count,
                       "sha256": sha256_file(out)})
    log.info("kept %d of %d rows of %s", count, len(rows), where)
    return count

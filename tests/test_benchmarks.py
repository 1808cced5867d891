"""Benchmark loaders: local JSONL and the hub path run on a local directory (offline)."""

from __future__ import annotations

import json

import pytest

from effopd.data.benchmarks import load_benchmark

ROWS = [{"idx": 10 + i, "question": f"What is {i}+{i}?", "solution": 2 * i} for i in range(5)]


def write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No network, and the datasets cache inside tmp_path."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def test_jsonl_with_keys(tmp_path) -> None:
    write_jsonl(tmp_path / "bench.jsonl", ROWS)
    problems = load_benchmark({"source": "jsonl", "path": str(tmp_path / "bench.jsonl"),
                               "problem_key": "question", "answer_key": "solution",
                               "id_key": "idx"})
    assert problems[1] == {"id": "11", "problem": "What is 1+1?", "answer": "2"}
    assert len(problems) == 5


def test_jsonl_defaults_and_limit(tmp_path) -> None:
    write_jsonl(tmp_path / "bench.jsonl", [{"problem": "p", "answer": 0.5}] * 4)
    problems = load_benchmark({"source": "jsonl", "path": str(tmp_path / "bench.jsonl"),
                               "limit": 2})
    assert problems == [{"id": "0", "problem": "p", "answer": "0.5"},
                        {"id": "1", "problem": "p", "answer": "0.5"}]


def test_jsonl_missing_key_names_file_key_and_columns(tmp_path) -> None:
    path = tmp_path / "bench.jsonl"
    write_jsonl(path, ROWS)
    with pytest.raises(ValueError, match=r"bench\.jsonl.*'answer'.*\['idx', 'question'"):
        load_benchmark({"source": "jsonl", "path": str(path), "problem_key": "question"})


def test_duplicate_ids_are_rejected(tmp_path) -> None:
    write_jsonl(tmp_path / "bench.jsonl", [{"id": 1, "problem": "p", "answer": 1}] * 2)
    with pytest.raises(ValueError, match="id '1' occurs more than once"):
        load_benchmark({"source": "jsonl", "path": str(tmp_path / "bench.jsonl"),
                        "id_key": "id"})


def test_hub_loader_on_local_directory(tmp_path, offline) -> None:
    write_jsonl(tmp_path / "repo" / "train.jsonl", ROWS)
    spec = {"source": "hub", "repo_id": str(tmp_path / "repo"), "revision": None,
            "split": "train", "subset": None, "problem_key": "question",
            "answer_key": "solution", "id_key": "idx", "limit": 3}
    problems = load_benchmark(spec)
    assert problems == [{"id": str(10 + i), "problem": f"What is {i}+{i}?", "answer": str(2 * i)}
                        for i in range(3)]


def test_hub_missing_key_names_repo_and_columns(tmp_path, offline) -> None:
    write_jsonl(tmp_path / "repo" / "train.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"repo.*'problem'.*\['idx', 'question', 'solution'\]"):
        load_benchmark({"source": "hub", "repo_id": str(tmp_path / "repo"), "split": "train"})


def test_hub_requires_a_pinned_revision() -> None:
    with pytest.raises(ValueError, match="pinned 'revision'"):
        load_benchmark({"source": "hub", "repo_id": "HuggingFaceH4/aime_2024", "split": "train"})


def test_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown benchmark source"):
        load_benchmark({"source": "ftp"})

"""Grading: math-verify verdicts, last-box extraction, hard timeouts and dead workers."""

from __future__ import annotations

import os
import time

import pytest

from effopd import grading
from effopd.grading import extract_last_boxed, grade_file, grade_records
from effopd.io import atomic_write_jsonl, read_jsonl

# 10^(10^(10^10)) against a symbolic gold keeps sympy inside C code for ~40 s on a laptop,
# long past math-verify's own SIGALRM: only killing the worker stops it.
TOWER = "\\boxed{10^{10^{10^{10}}}}"


@pytest.fixture(autouse=True)
def no_remembered_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty memo of verdicts (patched workers must be reached)."""
    monkeypatch.setattr(grading, "_VERDICTS", {})


def grade_one(gold: str, response: str) -> dict:
    return grade_records([{"gold": gold, "response": response}], progress=False)[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("The answer is \\boxed{105}.", "105"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("first \\boxed{1}, then \\boxed{2}", "2"),
    ("\\boxed{1} and finally \\fbox{3}", "3"),
    ("\\boxed{\\left\\{1, \\sqrt{2}\\right\\}} end", "\\left\\{1, \\sqrt{2}\\right\\}"),
    ("no box here", None),
    ("\\boxed{1} then \\boxed{\\frac{1}{2}", None),
    ("", None),
])
def test_extract_last_boxed(text: str, expected: str | None) -> None:
    assert extract_last_boxed(text) == expected


@pytest.mark.parametrize(("gold", "response", "correct"), [
    ("105", "So the answer is \\boxed{105}.", True),
    ("105", "\\boxed{104}", False),
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("0.5", "\\boxed{\\dfrac{1}{2}}", True),
    ("3\\sqrt{2}", "\\boxed{\\sqrt{18}}", True),  # bare "3\sqrt{2}" would parse as 3
    ("3\\sqrt{2}", "\\boxed{3}", False),
    ("x^2+1", "\\boxed{1 + x^2}", True),
    ("\\text{Monday}", "\\boxed{\\text{Monday}}", True),
    ("105", "\\boxed{104} no wait, \\boxed{105}", True),  # the last box wins
    ("104", "\\boxed{104} no wait, \\boxed{105}", False),
])
def test_verdicts(gold: str, response: str, correct: bool) -> None:
    row = grade_one(gold, response)
    assert (row["correct"], row["status"], row["error"]) == (correct, "ok", None)


def test_no_answer_and_fields() -> None:
    record = {"gold": "7", "response": "I am not sure.", "problem_id": "p3"}
    row = grade_records([record], progress=False)[0]
    assert row == {**record, "correct": False, "status": "no_answer", "extracted": None,
                   "error": None}
    assert "status" not in record  # inputs are copied, not changed


def test_empty_gold_is_an_error() -> None:
    # math-verify falls back to the raw string for unparseable LaTeX; only nothing yields []
    row = grade_one("", "\\boxed{1}")
    assert (row["correct"], row["status"]) == (False, "error")
    assert "gold" in row["error"]


def test_tower_of_powers_times_out_and_the_batch_goes_on() -> None:
    records = [{"gold": "105", "response": "\\boxed{105}"},
               {"gold": "x+1", "response": TOWER},
               {"gold": "\\frac{1}{2}", "response": "\\boxed{0.5}"},
               {"gold": "105", "response": "\\boxed{9^{9^{9^{9^{9}}}}}"},
               {"gold": "2", "response": "\\boxed{3}"}]
    start = time.monotonic()
    rows = grade_records(records, timeout_s=1.5, workers=2, progress=False)
    assert time.monotonic() - start < 10
    assert [r["correct"] for r in rows] == [True, False, True, False, False]
    assert [r["status"] for r in rows] == ["ok", "timeout", "ok", "timeout", "ok"]
    assert "killed" in rows[1]["error"]


def test_hung_worker_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = grading._grade_one

    def hang_on_42(gold: str, extracted: str, mv_timeout: int):
        if extracted == "42":
            time.sleep(60)  # forked workers inherit this patched function
        return real(gold, extracted, mv_timeout)

    monkeypatch.setattr(grading, "_grade_one", hang_on_42)
    records = [{"gold": "1", "response": f"\\boxed{{{x}}}"} for x in ("1", "42", "1", "2")]
    start = time.monotonic()
    rows = grade_records(records, timeout_s=1, workers=1, progress=False)
    assert time.monotonic() - start < 5
    assert [(r["status"], r["correct"]) for r in rows] == [
        ("ok", True), ("timeout", False), ("ok", True), ("ok", False)]


def test_dead_worker_is_an_error_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    real = grading._grade_one

    def crash_on_42(gold: str, extracted: str, mv_timeout: int):
        if extracted == "42":
            os._exit(3)  # as a segfault or an OOM kill would: no reply, the pipe closes
        return real(gold, extracted, mv_timeout)

    monkeypatch.setattr(grading, "_grade_one", crash_on_42)
    records = [{"gold": "1", "response": f"\\boxed{{{x}}}"} for x in ("42", "1", "42", "1")]
    rows = grade_records(records, workers=1, progress=False)
    assert [(r["status"], r["correct"]) for r in rows] == [
        ("error", False), ("ok", True), ("error", False), ("ok", True)]
    assert rows[0]["error"] == "worker died (exit code 3)"


def test_exception_in_worker_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(gold: str, extracted: str, mv_timeout: int):
        raise RuntimeError("boom")

    monkeypatch.setattr(grading, "_grade_one", explode)
    row = grade_one("1", "\\boxed{1}")
    assert (row["correct"], row["status"], row["error"]) == (False, "error", "RuntimeError: boom")


def test_missing_key_names_key_and_index() -> None:
    with pytest.raises(ValueError, match="record 1 has no 'gold' key"):
        grade_records([{"gold": "1", "response": ""}, {"response": "\\boxed{1}"}])
    with pytest.raises(ValueError, match="record 0 has no 'response' key"):
        grade_records([{"gold": "1"}])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        grade_records([], timeout_s=0)
    with pytest.raises(ValueError):
        grade_records([], workers=0)
    assert grade_records([], progress=False) == []


def test_grade_file_round_trip(tmp_path) -> None:
    rows = [{"problem_id": "a", "gold": "12", "response": "\\boxed{12}"},
            {"problem_id": "a", "gold": "12", "response": "\\boxed{13}"},
            {"problem_id": "b", "gold": "\\frac{1}{3}", "response": "no idea"}]
    atomic_write_jsonl(tmp_path / "in.jsonl", rows)
    counts = grade_file(tmp_path / "in.jsonl", tmp_path / "out" / "graded.jsonl",
                        timeout_s=5, workers=2)
    assert counts == {"ok": 2, "no_answer": 1, "error": 0, "timeout": 0}
    graded = read_jsonl(tmp_path / "out" / "graded.jsonl")
    assert [r["problem_id"] for r in graded] == ["a", "a", "b"]
    assert [r["correct"] for r in graded] == [True, False, False]
    assert [r["extracted"] for r in graded] == ["12", "13", None]


def test_each_distinct_pair_is_graded_once(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    real, calls = grading._grade_one, tmp_path / "calls.txt"

    def counted(gold: str, extracted: str, mv_timeout: int):
        with open(calls, "a") as handle:  # the forked worker appends, the test reads
            handle.write(f"{gold}|{extracted}\n")
        return real(gold, extracted, mv_timeout)

    monkeypatch.setattr(grading, "_grade_one", counted)
    records = [{"gold": g, "response": f"\\boxed{{{x}}}"}
               for g, x in [("12", "12"), ("12", "13"), ("12", "12"), ("5", "12"), ("12", "13")]]
    rows = grade_records(records, workers=2, progress=False)
    assert [(r["correct"], r["status"]) for r in rows] == [
        (True, "ok"), (False, "ok"), (True, "ok"), (False, "ok"), (False, "ok")]
    assert sorted(calls.read_text().split()) == ["12|12", "12|13", "5|12"]
    # A second call remembers every ok verdict: no item reaches a worker.
    again = grade_records(records[:2], workers=2, progress=False)
    assert [r["correct"] for r in again] == [True, False]
    assert len(calls.read_text().split()) == 3


def test_errors_are_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    real = grading._grade_one

    def crash_on_42(gold: str, extracted: str, mv_timeout: int):
        if extracted == "42":
            os._exit(3)
        return real(gold, extracted, mv_timeout)

    monkeypatch.setattr(grading, "_grade_one", crash_on_42)
    records = [{"gold": "42", "response": "\\boxed{42}"}] * 2
    assert [r["status"] for r in grade_records(records, workers=1, progress=False)] == \
        ["error", "error"]
    monkeypatch.setattr(grading, "_grade_one", real)
    assert grade_one("42", "\\boxed{42}")["correct"] is True

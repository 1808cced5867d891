"""Grading: math-verify verdicts, last-box extraction, hard timeouts and dead workers."""

from __future__ import annotations

import os
import time
from pathlib import Path

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


def test_malformed_records_are_errors_and_the_others_are_graded() -> None:
    rows = grade_records([{"gold": "1", "response": "\\boxed{1}"}, {"response": "\\boxed{1}"},
                          {"gold": "1"}, {"gold": "1", "response": None},
                          {"gold": None, "response": "\\boxed{1}"},
                          {"gold": ["1"], "response": "\\boxed{1}"},
                          {"gold": "1", "response": 1}, {"gold": 7, "response": "\\boxed{7}"}],
                         workers=1, progress=False)
    assert [(r["status"], r["correct"]) for r in rows] == [
        ("ok", True), ("error", False), ("error", False), ("error", False), ("error", False),
        ("error", False), ("error", False), ("ok", True)]
    assert [r["error"] for r in rows[1:7]] == [
        "no 'gold' key (keys: ['response'])", "no 'response' key (keys: ['gold'])",
        "'response' is null", "'gold' is null", "'gold' is not a string (list)",
        "'response' is not a string (int)"]


def test_grade_file_keeps_every_line_of_a_hostile_file(tmp_path) -> None:
    lines = ['{"gold": "2", "response": "\\\\boxed{2}"}', '{"gold": "2", "response": null}',
             '{"gold": "2", "resp', "[1, 2]", "", '{"gold": "3", "response": "\\\\boxed{4}"}']
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    counts = grade_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", workers=1)
    assert counts == {"ok": 2, "no_answer": 0, "error": 3, "timeout": 0}
    graded = read_jsonl(tmp_path / "out.jsonl")
    assert [r["status"] for r in graded] == ["ok", "error", "error", "error", "ok"]
    assert [r["correct"] for r in graded] == [True, False, False, False, False]
    assert graded[2]["line"] == 3 and graded[2]["error"].startswith("line 3: not valid JSON")
    assert graded[3] == {"line": 4, "raw": "[1, 2]", "correct": False, "status": "error",
                         "error": "line 4: not a JSON object (list)"}


def test_grade_command_survives_a_null_response(tmp_path) -> None:
    from tests.conftest import run_cli

    (tmp_path / "in.jsonl").write_text('{"gold": "1", "response": null}\n'
                                       '{"gold": "1", "response": "\\\\boxed{1}"}\n')
    result = run_cli("effopd", "grade", "--input", str(tmp_path / "in.jsonl"), "--output",
                     str(tmp_path / "out.jsonl"), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["error", "ok"]


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


def test_workers_die_with_a_killed_parent(tmp_path) -> None:
    """A SIGKILLed grader (as a killed trainer) must not leave its workers waiting for
    ever, holding its stderr open."""
    import signal
    import subprocess
    import sys
    import time

    script = ("import sys, time\n"
              "import effopd.grading as g\n"
              "g._grade_one = lambda *a: time.sleep(120)\n"
              "print('ready', flush=True)\n"
              "g.grade_records([{'gold': '1', 'response': '\\\\boxed{1}'}], timeout_s=100,"
              " workers=1, progress=False)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    children_file = f"/proc/{parent.pid}/task/{parent.pid}/children"
    deadline = time.monotonic() + 30
    while not (children := Path(children_file).read_text().split()):
        assert time.monotonic() < deadline, "no worker started"
        time.sleep(0.1)
    worker = int(children[0])
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    try:
        while os.path.exists(f"/proc/{worker}") and \
                Path(f"/proc/{worker}/stat").read_text().split()[2] != "Z":
            assert time.monotonic() < deadline, "the worker outlived its killed parent"
            time.sleep(0.1)
    finally:
        if os.path.exists(f"/proc/{worker}"):
            os.kill(worker, signal.SIGKILL)


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

"""Code grading: hostile programs run in the real sandbox, each contained and recorded.

Every test launches real processes. The hostile batch runs once per isolation that
works on this machine (``namespaces`` when unshare does, and always the ``rlimits``
fallback), and states exactly what each one guarantees.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from effopd import code_grading
from effopd.code_grading import (
    Isolation,
    Limits,
    detect_isolation,
    extract_code,
    grade_programs,
    grader_uids,
    record_fault,
    same_output,
    summarize_code_grades,
)

REPO = Path(__file__).resolve().parents[1]
SECRET = "effopd-secret-" + uuid.uuid4().hex


def isolation_or_skip(mode: str) -> Isolation:
    try:
        return detect_isolation(mode)
    except RuntimeError as err:
        pytest.skip(f"{mode} isolation does not work here: {err}")


@pytest.mark.parametrize(("text", "expected"), [
    ("Here:\n```python\ndef f():\n    return 1\n```\n", "def f():\n    return 1\n"),
    ("```python\na = 1\n```\nbetter:\n```python\na = 2\n```", "a = 2\n"),
    ("```py\nx = 3\n```", "x = 3\n"),
    ("```\nplain = 1\n```", "plain = 1\n"),
    ("```python\nlabelled = 1\n```\n```\nplain = 1\n```", "labelled = 1\n"),  # python wins
    ("```bash\nls\n```", "```bash\nls\n```"),  # another language: the whole text
    ("def f(): return 1", "def f(): return 1"),
])
def test_extract_code(text: str, expected: str) -> None:
    assert extract_code(text) == expected


@pytest.mark.parametrize(("actual", "expected", "same"), [
    ("3\n", "3", True),
    ("1 2  \n3\n\n\n", "1 2\n3", True),
    ("1\r\n2\r\n", "1\n2\n", True),
    ("1 2", "1  2", False),  # inner white space counts
    ("", "0", False),
    ("\n1", "1", False),  # leading empty lines count
])
def test_same_output(actual: str, expected: str, same: bool) -> None:
    assert same_output(actual, expected) is same


def test_record_faults_are_sandbox_errors_and_the_rest_is_graded() -> None:
    assert record_fault({"response": "x", "test": "assert True"}) is None
    assert record_fault({"response": "x", "stdio": [{"input": "", "output": ""}]}) is None
    assert "response" in record_fault({"test": "assert True"})
    assert "stdio" in record_fault({"response": "x", "stdio": []})
    assert "entry_point" in record_fault({"response": "x", "test": "", "entry_point": 3})
    rows = grade_programs([{"response": "x"}, {"response": "a = 1", "test": "assert a == 1"}],
                          Limits(timeout_s=5))
    assert [row["status"] for row in rows] == ["sandbox_error", "passed"]
    assert rows[0]["reason"].startswith("bad record")


def test_summarize_code_grades_exact() -> None:
    rows = [{"problem_id": "a", "status": s} for s in ("passed", "failed", "timeout",
                                                       "crashed")]
    rows += [{"problem_id": "b", "status": "passed"}] * 4
    summary = summarize_code_grades(rows, [1, 2, 8])
    # a: c=1 of 4, pass@2 = 1 - C(3,2)/C(4,2) = 1/2; b: c=4, pass@k = 1
    assert summary["avg@n"] == 5 / 8
    assert summary["pass@1"] == pytest.approx((1 / 4 + 1) / 2)
    assert summary["pass@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert "pass@8" not in summary
    assert {k: v for k, v in summary.items() if k.startswith("n_")} == {
        "n_problems": 2, "n_samples_per_problem": 4, "n_passed": 5, "n_failed": 1,
        "n_timeout": 1, "n_crashed": 1, "n_sandbox_error": 0}


def test_humaneval_check_and_stdio_cases() -> None:
    humaneval = {"response": "```python\ndef add(a, b):\n    return a + b\n```",
                 "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
                 "entry_point": "add"}
    wrong = dict(humaneval, response="def add(a, b):\n    return a - b\n")
    stdio = {"response": "import sys\nprint(sum(map(int, sys.stdin.read().split())))",
             "stdio": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 5", "output": "10"}]}
    stdio_wrong = dict(stdio, stdio=[{"input": "1 2", "output": "3"},
                                     {"input": "5 5", "output": "11"},
                                     {"input": "0 0", "output": "0"}])
    exits = {"response": "import sys\nprint(int(input()) * 2)\nsys.exit(0)",
             "stdio": [{"input": "4", "output": "8"}]}
    rows = grade_programs([humaneval, wrong, stdio, stdio_wrong, exits], Limits(timeout_s=5))
    assert [(r["status"], r["cases_passed"], r["cases_total"]) for r in rows] == [
        ("passed", 1, 1), ("failed", 0, 1), ("passed", 2, 2), ("failed", 1, 3),
        ("passed", 1, 1)]
    assert rows[1]["reason"].startswith("assertion")
    assert rows[3]["reason"] == "wrong_output on case 1"


def hostile_batch(port: int, marker: Path, repo_marker: Path) -> dict[str, dict]:
    """name -> record: the hostile programs, with a correct and a wrong one among them."""
    programs = {
        "correct": ("def f(x):\n    return x + 1\n", "assert f(1) == 2"),
        "wrong": ("def f(x):\n    return x\n", "assert f(1) == 2"),
        "syntax_error": ("def f(x) return x\n", "assert f(1) == 2"),
        "infinite_loop": ("while True:\n    pass\n", ""),
        "fork_bomb": ("import os\nwhile True:\n    os.fork()\n", ""),
        "resilient_fork_bomb": ("import os, time\nwhile True:\n    try:\n        os.fork()\n"
                                "    except OSError:\n        time.sleep(0.01)\n", ""),
        "setsid_escapees": ("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n"
                            "        os.setsid()\n        while True:\n"
                            "            time.sleep(1)\n", ""),
        "memory_hog": ("blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n", ""),
        "writes_outside": (f"open({str(marker)!r}, 'w').write('x')\n"
                           f"try:\n    open({str(repo_marker)!r}, 'w').write('x')\n"
                           "except OSError:\n    pass\n", ""),
        "reads_environment": ("import glob, os\n"
                              f"assert {SECRET!r} not in str(os.environ)\n"
                              "for path in glob.glob('/proc/*/environ'):\n"
                              "    try:\n        data = open(path, 'rb').read()\n"
                              "    except OSError:\n        continue\n"
                              f"    assert {SECRET!r}.encode() not in data, path\n", ""),
        "network": (f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 1)\n", ""),
        "huge_output": ("import sys\nsys.stdout.write('x' * (50 << 20))\n"
                        "sys.stderr.write('y' * (8 << 20))\n", ""),
        "exits_before_tests": ("import os\nos._exit(0)\n", "assert False"),
        "forged_verdict": ("import os\nos.write(3, b'0123abcd passed \\n')\nos._exit(0)\n",
                           "assert False"),
    }
    return {name: {"problem_id": name, "response": f"```python\n{code}```", "test": test}
            for name, (code, test) in programs.items()}


def live_tasks(uids: range) -> list[str]:
    """Processes (not zombies) owned by ``uids``: 'pid state'."""
    found = []
    for entry in os.scandir("/proc"):
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields["Uid"].split()[0]) in uids and fields["State"].split()[0] != "Z":
            found.append(f"{entry.name} {fields['State'].strip()}")
    return found


# What each isolation guarantees for the programs whose fate depends on it.
EXPECTED = {
    "namespaces+uid": {"network": "failed", "reads_environment": "passed"},
    "userns": {"network": "failed", "reads_environment": "passed"},
    "rlimits+uid": {"network": "passed", "reads_environment": "passed"},
    "rlimits": {"network": "passed", "reads_environment": "failed"},  # /proc/<pid>/environ
}


@pytest.mark.parametrize("mode", ["namespaces", "rlimits"])
def test_hostile_programs_are_contained_and_recorded(mode: str, monkeypatch) -> None:
    iso = isolation_or_skip(mode)
    monkeypatch.setenv("EFFOPD_TEST_SECRET", SECRET)
    marker = Path(tempfile.gettempdir(), f"outside_{uuid.uuid4().hex}")
    repo_marker = REPO / f"outside_{uuid.uuid4().hex}"
    listener = socket.create_server(("127.0.0.1", 0))
    # a process holding the secret in its initial environment (what /proc/<pid>/environ
    # shows; the grader's own setenv above does not reach its /proc file)
    holder = subprocess.Popen(["sleep", "120"], env={**os.environ, "EFFOPD_TEST_SECRET": SECRET})
    batch = hostile_batch(listener.getsockname()[1], marker, repo_marker)
    # the grader's temporary root goes to a directory of this test's own (traversable by
    # the run uids, as /tmp), so sandboxes of other pytest workers don't enter the count
    private_tmp = tempfile.mkdtemp(prefix="effopd-test-tmp-")
    os.chmod(private_tmp, 0o711)
    monkeypatch.setattr(tempfile, "tempdir", private_tmp)
    temp_before = set(Path(private_tmp).glob("effopd-sandbox-*"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    try:
        # 5 s: time for the fork bomb to reach RLIMIT_NPROC on a loaded machine (at 2 s it
        # timed out once while another pytest worker ran a DAG beside it)
        rows = grade_programs(list(batch.values()), Limits(timeout_s=5, memory_mb=512),
                              workers=2, isolation=mode, total_timeout_s=60)
        elapsed = time.monotonic() - start
        rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        got = {row["problem_id"]: row for row in rows}
        outside_written = marker.exists()
        repo_written = repo_marker.exists()
    finally:
        listener.close()
        holder.kill()
        holder.wait()
        marker.unlink(missing_ok=True)
        repo_marker.unlink(missing_ok=True)
    expected = {"correct": "passed", "wrong": "failed", "syntax_error": "failed",
                "infinite_loop": "timeout", "fork_bomb": "crashed",
                "resilient_fork_bomb": "timeout", "setsid_escapees": "passed",
                "memory_hog": "crashed", "writes_outside": "passed",
                "huge_output": "passed", "exits_before_tests": "crashed",
                "forged_verdict": "failed", **EXPECTED[iso.name]}
    assert {name: row["status"] for name, row in got.items()} == expected, \
        {name: (row["status"], row["reason"], row["stderr"][-300:]) for name, row in got.items()}
    assert {row["sandbox"] for row in rows} == {iso.name}
    reasons = {name: row["reason"] for name, row in got.items()}
    assert reasons["wrong"].startswith("assertion")
    assert reasons["syntax_error"].startswith("syntax_error: SyntaxError")
    assert reasons["fork_bomb"].startswith("resource_limit: EAGAIN")
    assert reasons["memory_hog"] == "memory_limit"
    assert reasons["infinite_loop"] == reasons["resilient_fork_bomb"] == "wall clock over 5 s"
    assert got["infinite_loop"]["signal"] == "SIGKILL"
    assert reasons["exits_before_tests"] == "exited with code 0 without a verdict"
    # fd 3 is the read end of the judge's request pipe now: the forgery cannot even be
    # written (tests/test_code_forgery.py tries every other way)
    assert reasons["forged_verdict"].startswith("exception: OSError: [Errno 9]")
    if iso.name in ("namespaces+uid", "userns"):
        assert "Network is unreachable" in reasons["network"]
    # huge output: counted, kept up to the cap, the grader's memory untouched
    huge = got["huge_output"]
    assert (huge["stdout_bytes"], huge["stderr_bytes"]) == (50 << 20, 8 << 20)
    assert huge["output_truncated"] and len(huge["stderr"]) == code_grading.STDERR_KEPT
    assert rss_growth_mb < 40, rss_growth_mb
    # writes outside the working directory
    assert not repo_written  # read-only tree (namespaces) or root-owned (slot uid)
    if iso.mounts:
        assert not outside_written  # /tmp was the run's own tmpfs
    elif iso.drop_uid:
        assert outside_written  # the fallback does not protect world-writable /tmp
    # nothing of the batch survives it, and the machine answers at once
    if iso.drop_uid:
        deadline = time.monotonic() + 5
        while live_tasks(grader_uids()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live_tasks(grader_uids()) == []
    probe = time.monotonic()
    subprocess.run(["true"], check=True)
    assert time.monotonic() - probe < 1.0
    assert elapsed < 30, elapsed  # two 5-second timeouts on two workers, plus startups
    assert set(Path(private_tmp).glob("effopd-sandbox-*")) == temp_before
    os.rmdir(private_tmp)  # empty: the grader removed its own root


def test_batched_grading_gives_the_same_verdicts_one_process_per_item(monkeypatch) -> None:
    """grade_programs_batched: the hostile batch, 64 programs to a sandbox run, each in a
    forked child of its own: the verdicts of one run per program (output is not kept, so
    the huge output passes too); a program that kills its harness leaves the items after
    it to be graded one run each; identical items are graded once."""
    iso = isolation_or_skip("namespaces")
    monkeypatch.setenv("EFFOPD_TEST_SECRET", SECRET)
    marker = Path(tempfile.gettempdir(), f"outside_{uuid.uuid4().hex}")
    listener = socket.create_server(("127.0.0.1", 0))
    batch = hostile_batch(listener.getsockname()[1], marker, REPO / "never_written")
    batch.pop("reads_environment")  # /proc/<pid>/environ: the namespaces test above
    killer = {"problem_id": "kills_harness", "test": "assert f(1) == 2",
              "response": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"}
    after = dict(batch["correct"], problem_id="after_killer",
                 response="def f(x):\n    return 1 + x\n")
    records = [*batch.values(), batch["correct"], killer, after]
    try:
        rows = code_grading.grade_programs_batched(records, Limits(timeout_s=5, memory_mb=512),
                                                   workers=2, batch_size=64)
    finally:
        listener.close()
        marker.unlink(missing_ok=True)
    expected = {"correct": "passed", "wrong": "failed", "syntax_error": "failed",
                "infinite_loop": "timeout", "fork_bomb": "crashed",
                "resilient_fork_bomb": "timeout", "setsid_escapees": "passed",
                "memory_hog": "crashed", "writes_outside": "passed", "network": "failed",
                "huge_output": "passed", "exits_before_tests": "crashed",
                "forged_verdict": "failed", "after_killer": "passed"}
    got = {row["problem_id"]: row for row in rows}
    assert {name: got[name]["status"] for name in expected} == expected, \
        {name: (row["status"], row["reason"]) for name, row in got.items()}
    assert got["kills_harness"]["status"] in ("crashed", "failed")
    reasons = {name: row["reason"] for name, row in got.items()}
    assert reasons["fork_bomb"].startswith("resource_limit: EAGAIN")
    assert reasons["memory_hog"] == "memory_limit"
    assert reasons["infinite_loop"] == "wall clock over 5 s"
    assert reasons["exits_before_tests"] == "exited with code 0 without a verdict"
    assert "Network is unreachable" in reasons["network"]
    assert rows[len(batch)] == {**rows[0], "problem_id": "correct"}  # graded once
    assert rows[0]["batched"] and not got["after_killer"]["batched"]  # graded on its own
    assert {row["sandbox"] for row in rows} == {iso.name}
    assert not marker.exists()
    assert live_tasks(grader_uids()) == []


def test_cpu_limit_crashes_with_sigxcpu() -> None:
    rows = grade_programs([{"response": "while True:\n    pass\n", "test": ""}],
                          Limits(timeout_s=10, cpu_s=1))
    assert (rows[0]["status"], rows[0]["reason"], rows[0]["signal"]) == \
        ("crashed", "cpu_limit", "SIGXCPU")
    assert rows[0]["wall_s"] < 5


def test_global_deadline_bounds_the_batch() -> None:
    loops = [{"response": "while True:\n    pass\n", "test": ""}] * 4
    start = time.monotonic()
    rows = grade_programs(loops, Limits(timeout_s=30), workers=1, total_timeout_s=1.5)
    assert time.monotonic() - start < 8
    assert [row["status"] for row in rows] == ["timeout"] + ["sandbox_error"] * 3
    assert rows[0]["reason"] == "global deadline of 1.5 s"
    assert rows[1]["reason"] == "not run: global deadline of 1.5 s"


def test_a_launcher_failure_is_a_sandbox_error() -> None:
    iso = detect_isolation()
    no_python = Isolation(iso.name, iso.prefix, iso.mounts, iso.drop_uid, "/nonexistent/python")
    no_prefix = Isolation(iso.name, ("/nonexistent/unshare",), iso.mounts, iso.drop_uid,
                          iso.python)
    for broken in (no_python, no_prefix):
        rows = code_grading._grade([{"response": "a = 1", "test": ""}] * 2, broken,
                                   Limits(timeout_s=5), 1, None)
        assert [row["status"] for row in rows] == ["sandbox_error"] * 2
        assert "/nonexistent/" in rows[0]["reason"]
    with pytest.raises(RuntimeError, match="no sandbox works here"):
        detect_isolation("rlimits", python="/nonexistent/python")

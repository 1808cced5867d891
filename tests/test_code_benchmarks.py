"""Code benchmark loaders on fixtures in the real formats, graded end to end in the sandbox.

The fixtures are written here in the formats of the real files: an evalplus release
(gzip JSON lines: task_id, prompt, entry_point, canonical_solution, base_input,
plus_input, atol, ...) and LiveCodeBench ``code_generation_lite`` files (test.jsonl ...
test6.jsonl; public tests as JSON, private tests as base64 of zlib of a pickled JSON
string, metadata as a JSON string).
"""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import zlib

import pytest

from effopd.code_grading import grade_programs, summarize_code_grades
from effopd.data.benchmarks import load_benchmark
from effopd.data.code_benchmarks import lcb_tests, mbpp_inputs
from effopd.evaluation import grade_code, prepare_benchmark
from effopd.io import read_json, read_jsonl

HUMANEVAL_ROWS = [
    {"task_id": "HumanEval/0", "entry_point": "mean_abs",
     "prompt": "from typing import List\n\n\ndef mean_abs(xs: List[float]) -> float:\n"
               "    \"\"\"Mean of the absolute values.\"\"\"\n",
     "canonical_solution": "    return sum(abs(x) for x in xs) / len(xs)\n",
     "contract": "", "base_input": [[[1.0, 2.0]], [[3.0]]],
     "plus_input": [[[0.1, 0.2, -0.3]], [[1e300, -1e300]]], "atol": 0,
     "test": "def check(candidate):\n    assert candidate([1.0]) == 1.0\n"},
    {"task_id": "HumanEval/1", "entry_point": "count_up",
     "prompt": "def count_up(n: int) -> list:\n    \"\"\"0 .. n-1, except n < 0 gives [].\"\"\"\n",
     "canonical_solution": "    return list(range(n)) if n >= 0 else []\n",
     "contract": "", "base_input": [[3]], "plus_input": [[0], [-5], [40]], "atol": 0,
     "test": ""},
]
MBPP_ROWS = [
    {"task_id": "Mbpp/2", "entry_point": "similar_elements",
     "prompt": "\"\"\"\nWrite a function to find the shared elements from the given two "
               "lists.\nassert set(similar_elements((3, 4), (4, 5))) == set((4,))\n\"\"\"\n",
     "canonical_solution": "\ndef similar_elements(test_tup1, test_tup2):\n"
                           "  assert isinstance(test_tup1, tuple)\n"
                           "  return tuple(sorted(set(test_tup1) & set(test_tup2)))\n",
     "base_input": [[[3, 4, 5, 6], [5, 7, 4, 10]]], "plus_input": [[[1, 2], [3]]],
     "atol": 0, "test": "", "contract": ""},
]
HUMANEVAL_RIGHT = ("```python\nfrom typing import List\n\n\ndef mean_abs(xs: List[float]) -> "
                   "float:\n    return sum(map(abs, xs)) / len(xs)\n```")
HUMANEVAL_WRONG = "```python\ndef mean_abs(xs):\n    return abs(sum(xs)) / len(xs)\n```"


def write_gzip_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))


def compress_tests(cases: list[dict]) -> str:
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def lcb_row(question_id: str, date: str, tests: list[dict], starter: str = "",
            func_name: str | None = None) -> dict:
    public, private = tests[:1], tests[1:]
    return {"question_title": f"title {question_id}", "question_content": f"Solve {question_id}.",
            "platform": "leetcode" if func_name else "atcoder", "question_id": question_id,
            "contest_id": "c1", "contest_date": date, "starter_code": starter,
            "difficulty": "easy", "public_test_cases": json.dumps(public),
            "private_test_cases": compress_tests(private),
            "metadata": json.dumps({"func_name": func_name} if func_name else {})}


STDIN_TESTS = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
               {"input": "10 20\n", "output": "30\n", "testtype": "stdin"},
               {"input": "-5 5\n", "output": "0\n", "testtype": "stdin"}]
FUNCTIONAL_TESTS = [{"input": "[1, 2, 3]\n2", "output": "[3, 4, 5]", "testtype": "functional"},
                    {"input": "[]\n7", "output": "[]", "testtype": "functional"}]
STARTER = "class Solution:\n    def addAll(self, nums: List[int], k: int) -> List[int]:\n        "


@pytest.fixture
def lcb_dir(tmp_path):
    """A release_v2 directory: test.jsonl (old problems) and test2.jsonl (new ones)."""
    root = tmp_path / "lcb"
    root.mkdir()
    old = [lcb_row("abc100_a", "2024-06-01T00:00:00", STDIN_TESTS)]
    new = [lcb_row("abc400_a", "2025-03-01T00:00:00", STDIN_TESTS),
           lcb_row("3500", "2025-04-12T19:30:00", FUNCTIONAL_TESTS, STARTER, "addAll"),
           lcb_row("abc410_a", "2025-06-01T00:00:00", STDIN_TESTS)]
    for name, rows in (("test.jsonl", old), ("test2.jsonl", new)):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def graded(problem: dict, *responses: str) -> list[dict]:
    rows = grade_programs([{**problem, "problem_id": problem["id"], "response": r}
                           for r in responses], workers=2)
    return rows


def test_humaneval_plus_release_graded_against_its_canonical_solution(tmp_path) -> None:
    write_gzip_jsonl(tmp_path / "HumanEvalPlus.jsonl.gz", HUMANEVAL_ROWS)
    problems = load_benchmark({"source": "evalplus", "dataset": "humaneval",
                               "version": "v0.1.10",
                               "path": str(tmp_path / "HumanEvalPlus.jsonl.gz")})
    assert [p["id"] for p in problems] == ["HumanEval/0", "HumanEval/1"]
    assert problems[0]["entry_point"] == "mean_abs" and "answer" not in problems[0]
    assert problems[0]["problem"].startswith("```python\nfrom typing import List")
    # right; wrong on a plus input only (the sign); float rounding within atol 1e-6
    near = ("```python\ndef mean_abs(xs):\n"
            "    return sum(abs(x) for x in xs) / len(xs) + 1e-9\n```")
    rows = graded(problems[0], HUMANEVAL_RIGHT, HUMANEVAL_WRONG, near)
    assert [r["status"] for r in rows] == ["passed", "failed", "passed"], rows
    assert "wrong output on input 2" in rows[1]["reason"]
    # the plus inputs count: right on every base input, wrong on n = 0 and n < 0
    base_only = ("```python\ndef count_up(n):\n"
                 "    return [i for i in range(n)] if n > 0 else None\n```")
    rows = graded(problems[1], base_only, "```python\ndef count_up(n):\n    return "
                  "list(range(max(n, 0)))\n```")
    assert [r["status"] for r in rows] == ["failed", "passed"], rows


def test_mbpp_plus_inputs_become_tuples_as_evalplus_reads_them(tmp_path) -> None:
    write_gzip_jsonl(tmp_path / "MbppPlus.jsonl.gz", MBPP_ROWS)
    (problem,) = load_benchmark({"source": "evalplus", "dataset": "mbpp", "version": "v0.2.0",
                                 "path": str(tmp_path / "MbppPlus.jsonl.gz")})
    assert problem["id"] == "Mbpp/2" and "[(3, 4, 5, 6), (5, 7, 4, 10)]" in problem["test"]
    rows = graded(problem, "```python\ndef similar_elements(a, b):\n    return tuple(sorted("
                  "set(a) & set(b)))\n```", "```python\ndef similar_elements(a, b):\n"
                  "    return tuple(set(a) | set(b))\n```")
    assert [r["status"] for r in rows] == ["passed", "failed"], rows
    assert mbpp_inputs("Mbpp/124", [["1.5", "(1+2j)"]]) == [[1.5, 1 + 2j]]
    assert mbpp_inputs("Mbpp/115", [[[[1], []]]]) == [[[{1}, {}]]]
    assert mbpp_inputs("Mbpp/580", [[[1, [2, 3]]]]) == [((1, (2, 3)),)]
    assert mbpp_inputs("Mbpp/3", [[[1, 2]]]) == [[[1, 2]]]


def test_evalplus_rejects_a_row_without_its_inputs(tmp_path) -> None:
    row = {k: v for k, v in HUMANEVAL_ROWS[0].items() if k != "plus_input"}
    write_gzip_jsonl(tmp_path / "bad.jsonl.gz", [row])
    with pytest.raises(ValueError, match=r"bad.jsonl.gz: row 1 has no \['plus_input'\]"):
        load_benchmark({"source": "evalplus", "dataset": "humaneval", "version": "v0.1.10",
                        "path": str(tmp_path / "bad.jsonl.gz")})


def test_lcb_release_files_window_and_both_test_types(lcb_dir) -> None:
    spec = {"source": "lcb", "repo_id": "livecodebench/code_generation_lite",
            "revision": "0" * 40, "release": "release_v2", "date_from": "2025-02-01",
            "date_to": "2025-05-01", "path": str(lcb_dir)}
    problems = load_benchmark(spec)
    assert [p["id"] for p in problems] == ["abc400_a", "3500"]  # the window, both files
    stdin, functional = problems
    assert stdin["stdio"] == [{"input": t["input"], "output": t["output"]} for t in STDIN_TESTS]
    assert "standard input" in stdin["problem"] and "test" not in stdin
    assert "class Solution" in functional["problem"] and "stdio" not in functional
    rows = graded(stdin, "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
                  "```python\na, b = map(int, input().split())\nprint(abs(a + b) if a > 0 "
                  "else a - b)\n```")
    assert [r["status"] for r in rows] == ["passed", "failed"], rows
    assert rows[0]["cases_passed"] == 3 and rows[1]["reason"] == "wrong_output on case 2"
    rows = graded(functional, "```python\nfrom typing import List\nclass Solution:\n"
                  "    def addAll(self, nums: List[int], k: int) -> List[int]:\n"
                  "        return tuple(x + k for x in nums)\n```",
                  "```python\nclass Solution:\n    def addAll(self, nums, k):\n"
                  "        return [x + k for x in nums] or [k]\n```")
    assert [r["status"] for r in rows] == ["passed", "failed"], rows
    assert "wrong output on case 1" in rows[1]["reason"]
    assert [p["id"] for p in load_benchmark({**spec, "release": "release_v1"})] == []


def test_lcb_private_tests_unpickle_strings_only() -> None:
    cases = [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]
    assert lcb_tests(compress_tests(cases)) == cases == lcb_tests(json.dumps(cases))

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        lcb_tests(evil)


def test_prepared_code_benchmark_scores_with_statuses(tmp_path) -> None:
    write_gzip_jsonl(tmp_path / "HumanEvalPlus.jsonl.gz", HUMANEVAL_ROWS[:1])
    out = tmp_path / "humaneval_plus.jsonl"
    prepare_benchmark({"source": "evalplus", "dataset": "humaneval", "version": "v0.1.10",
                       "path": str(tmp_path / "HumanEvalPlus.jsonl.gz")}, out)
    manifest = read_json(tmp_path / "humaneval_plus.manifest.json")
    assert manifest["grader"] == "code" and manifest["version"] == "v0.1.10"
    problems = read_jsonl(out)
    loop = "```python\ndef mean_abs(xs):\n    while True:\n        pass\n```"
    rows, summary = grade_code(problems, [[HUMANEVAL_RIGHT, HUMANEVAL_WRONG, loop, "no code"]],
                               {"timeout_s": 2.0, "workers": 2}, [1, 2, 8])
    assert [r["status"] for r in rows] == ["passed", "failed", "timeout", "failed"]
    assert [r["correct"] for r in rows] == [True, False, False, False]
    assert "test" not in rows[0] and rows[0]["problem_id"] == "HumanEval/0"
    assert summary["avg@n"] == 0.25 and summary["pass@1"] == 0.25
    assert summary["pass@2"] == pytest.approx(0.5) and "pass@8" not in summary
    assert (summary["n_passed"], summary["n_failed"], summary["n_timeout"]) == (1, 2, 1)
    assert summary == summarize_code_grades(rows, [1, 2, 8])

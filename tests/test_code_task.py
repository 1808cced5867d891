"""The tiny code task: deterministic disjoint splits, minimal-parenthesis programs, hidden
tests that every reference passes and a planted wrong-precedence program fails (in the
real sandbox), and the training reward on code rollouts."""

import pytest

from effopd.code_grading import grade_programs_batched
from effopd.config import validate_config
from effopd.data.code_task import (
    CodeTaskSpec,
    evaluate,
    generate_splits,
    program,
    render,
    without_parentheses,
    write_splits,
)
from effopd.data.tasks import write_task_splits
from effopd.evaluation import is_code_benchmark, prepare_benchmark
from effopd.io import read_jsonl
from effopd.training.rewards import correct

SPEC = CodeTaskSpec(n_train=300, n_val=20, n_test=60, min_ops=2, max_ops=4)


@pytest.fixture(scope="module")
def splits():
    return generate_splits(SPEC)


def test_split_sizes_disjointness_and_determinism(splits):
    assert {k: len(v) for k, v in splits.items()} == {"train": 300, "val": 20, "test": 60}
    questions = [{row["question"] for row in rows} for rows in splits.values()]
    assert sum(map(len, questions)) == 380  # no duplicates within or across splits
    assert generate_splits(SPEC) == splits
    bigger = generate_splits(CodeTaskSpec(n_train=500, n_val=20, n_test=60, min_ops=2,
                                          max_ops=4))
    assert bigger["test"] == splits["test"] and bigger["val"] == splits["val"]
    assert generate_splits(CodeTaskSpec(seed=1, n_train=300, n_val=20, n_test=60, min_ops=2,
                                        max_ops=4))["test"] != splits["test"]


@pytest.mark.parametrize(("ops", "expected"), [
    ([("add", 3), ("multiply", 2), ("subtract", 4)], "(x+3)*2-4"),
    ([("negate", None), ("square", None)], "(-x)**2"),
    ([("square", None), ("negate", None)], "-x**2"),
    ([("negate", None), ("floordiv", 2)], "-x//2"),
    ([("subtract", 1), ("negate", None), ("mod", 5)], "-(x-1)%5"),
    ([("mod", 7), ("multiply", 3), ("add", 1)], "x%7*3+1"),
    ([("square", None), ("square", None)], "(x**2)**2"),
    ([("add", 2), ("square", None), ("negate", None)], "-(x+2)**2"),
])
def test_render_writes_the_fewest_parentheses_python_needs(ops, expected):
    text, level = "x", 9
    for op, k in ops:
        text, level = render(text, level, op, k)
    assert text == expected
    assert evaluate("(x+3)*2-4", 5) == 12 and evaluate("(-x)**2", 3) == 9
    assert evaluate("-x**2", 3) == -9 and evaluate("-x//2", 3) == -2


def test_solutions_reason_in_comments_and_return_the_reference(splits):
    for row in (r for rows in splits.values() for r in rows):
        lines = row["solution"].split("\n")
        assert lines[0] == "def f(x):" and lines[-1] == f"    return {row['expression']}"
        assert len(lines) == row["n_ops"] + 1  # one comment per intermediate expression
        assert all(line.startswith("    # ") for line in lines[1:-1])
        assert row["answer"] == program(row["expression"])
        assert SPEC.min_ops <= row["n_ops"] <= SPEC.max_ops
        assert row["question"].startswith("Take x, ") and row["entry_point"] == "f"


def test_references_pass_their_hidden_tests_and_wrong_precedence_fails(splits):
    """Through the real sandbox: every reference program (and an equivalent program written
    differently) passes its own tests; the program with every parenthesis dropped fails
    wherever it is another function; another problem's reference fails."""
    rows = [r for rows in splits.values() for r in rows]
    records = [{"response": row["answer"], "test": row["test"]} for row in rows]
    records += [{"response": f"```python\ndef f(y):\n    z = {row['expression'].replace('x', 'y')}"
                             f"\n    return z\n```", "test": row["test"]} for row in rows[:20]]
    planted = [row for row in rows if "(" in row["expression"]
               and any(evaluate(row["expression"], x) != evaluate(
                   without_parentheses(row["expression"]), x) for x in range(-20, 21))]
    assert len(planted) > 100
    records += [{"response": program(without_parentheses(row["expression"])),
                 "test": row["test"]} for row in planted]
    records += [{"response": rows[0]["answer"], "test": rows[1]["test"]}]
    graded = grade_programs_batched(records, workers=2)
    statuses = [row["status"] for row in graded]
    assert statuses == ["passed"] * (len(rows) + 20) + ["failed"] * (len(planted) + 1)
    assert all(row["reason"].startswith("assertion: f(") for row in graded[len(rows) + 20:])


def test_write_task_splits_routes_by_kind_and_benchmarks_keep_the_tests(tmp_path):
    block = {"kind": "code", "seed": 3, "n_train": 40, "n_val": 5, "n_test": 6,
             "min_ops": 2, "max_ops": 3, "code": {"n_tests": 6, "input_min": -5,
                                                  "input_max": 5, "constant_max": 5}}
    assert write_task_splits(block, tmp_path) == {"train": 40, "val": 5, "test": 6}
    (row, *_) = read_jsonl(tmp_path / "test.jsonl")
    assert row["test"].count(",") == 2 * 6 + 1  # six (input, output) pairs
    prepare_benchmark({"source": "task", "split": "test"}, tmp_path / "b.jsonl",
                      task_file=tmp_path / "test.jsonl")
    problems = read_jsonl(tmp_path / "b.jsonl")
    assert is_code_benchmark(problems) and set(problems[0]) == {"id", "problem", "test",
                                                                "entry_point"}
    assert write_task_splits({"kind": "arithmetic", "n_train": 5, "n_val": 2, "n_test": 2},
                             tmp_path / "math") == {"train": 5, "val": 2, "test": 2}


def test_reward_on_code_rollouts_runs_the_hidden_tests_in_the_sandbox(splits):
    """The trainer's reward (RL's, the batch accuracy, EffOPD's validation score): a correct
    and an incorrect completion of a code problem, a math problem beside them, and a
    completion that never returns (killed at its timeout, a 0 reward, no hang)."""
    row = next(r for r in splits["test"] if "(" in r["expression"])
    right = row["solution"]
    wrong = program(without_parentheses(row["expression"]))
    loops = "def f(x):\n    while True:\n        pass"
    math = {"answer": "12"}
    rewards = correct([right, wrong, loops, "so \\boxed{12}", "\\boxed{13}", right],
                      [row, row, row, math, math, row], timeout_s=2, workers=1,
                      batch_size=4)
    assert rewards == [True, False, False, True, False, True]
    with pytest.raises(ValueError, match="2 responses for 1 problems"):
        correct([right, wrong], [row], timeout_s=2, workers=1)


def test_config_refuses_bad_code_keys_naming_them(repo):
    import copy

    import yaml

    code = yaml.safe_load((repo / "config/code.yaml").read_text())

    def config(**task):
        out = copy.deepcopy(code)
        out["task"] = {**out["task"], **task}
        return out
    with pytest.raises(Exception, match="task/code/n_tests"):
        validate_config(config(code={"n_tests": 20, "input_min": 0, "input_max": 9}))
    with pytest.raises(Exception, match="operations"):
        validate_config(config(code={"operations": ["add", "power"]}))
    with pytest.raises(Exception, match="task/kind"):
        validate_config(config(kind="prose"))
    engine = config()
    engine["training"]["engine"] = "trl"
    with pytest.raises(Exception, match="key 'task/kind': code is graded in the sandbox"):
        validate_config(engine)
    assert validate_config(config(code={}))["task"]["code"]["n_tests"] == 10


def test_write_splits_round_trip(tmp_path, splits):
    assert write_splits(SPEC, tmp_path) == {"train": 300, "val": 20, "test": 60}
    assert read_jsonl(tmp_path / "val.jsonl") == splits["val"]

"""The tiny task generator: exact arithmetic, disjoint deterministic splits, CoT format."""

import re

import pytest

from effopd.data.arithmetic import (
    ArithmeticSpec,
    evaluate_expression,
    generate_splits,
    write_splits,
)
from effopd.io import read_jsonl

SPEC = ArithmeticSpec(n_train=500, n_val=20, n_test=50)
STEP = re.compile(r"^(\d+)([+*-])(\d+)=(\d+)$")


@pytest.fixture(scope="module")
def splits():
    return generate_splits(SPEC)


def test_split_sizes_and_disjointness(splits):
    assert {k: len(v) for k, v in splits.items()} == {"train": 500, "val": 20, "test": 50}
    questions = [{row["question"] for row in rows} for rows in splits.values()]
    assert sum(map(len, questions)) == 570  # no duplicates within or across splits


def test_generation_is_deterministic_and_test_independent_of_train_size(splits):
    assert generate_splits(SPEC) == splits
    bigger = generate_splits(ArithmeticSpec(n_train=900, n_val=20, n_test=50))
    assert bigger["test"] == splits["test"] and bigger["val"] == splits["val"]


def test_every_solution_is_exact_chain_of_thought(splits):
    for row in (r for rows in splits.values() for r in rows):
        *steps, final = row["solution"].split("\n")
        assert final == f"\\boxed{{{row['answer']}}}"
        assert len(steps) == row["n_ops"]
        assert SPEC.min_ops <= row["n_ops"] <= SPEC.max_ops
        previous = None
        for line in steps:
            a, op, b, c = STEP.match(line).groups()
            a, b, c = int(a), int(b), int(c)
            assert c == {"+": a + b, "-": a - b, "*": a * b}[op]
            assert 0 <= c <= SPEC.value_max
            assert previous is None or a == previous  # each step starts from the last result
            previous = c
        assert evaluate_expression(row["question"]) == int(row["answer"]) == previous


def test_write_splits_round_trip(tmp_path, splits):
    counts = write_splits(SPEC, tmp_path)
    assert counts == {"train": 500, "val": 20, "test": 50}
    assert read_jsonl(tmp_path / "test.jsonl") == splits["test"]


def test_impossible_spec_names_the_split():
    with pytest.raises(ValueError, match="n_test"):
        generate_splits(ArithmeticSpec(n_test=200, n_val=1, n_train=1, min_ops=1,
                                       max_ops=1, value_max=10, start_max=3, operand_max=2))


def test_from_config_ignores_non_knobs():
    assert ArithmeticSpec.from_config({"seed": 3, "unrelated": 1}).seed == 3

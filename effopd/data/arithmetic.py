"""The tiny task: procedurally generated multi-step integer arithmetic.

A problem is a left-nested expression such as ``((23+7)*3)-15``. Its
chain-of-thought solution evaluates one operation per line and ends with the
answer in ``\\boxed{}``::

    23+7=30
    30*3=90
    90-15=75
    \\boxed{75}

Every intermediate value stays in ``[0, value_max]`` so that each line is a
two-digit operation: hard enough that a small student makes mistakes, easy
enough that a small teacher learns it in minutes on a CPU. Difficulty is set by
the number of operations (``min_ops`` .. ``max_ops``) and ``value_max``.

Splits are generated from one fixed seed and are disjoint by problem text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from effopd.config import dataclass_from_block
from effopd.io import atomic_write_jsonl

ANSWER_TEMPLATE = "\\boxed{{{answer}}}"
QUESTION_TEMPLATE = "Compute {expression}."
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ArithmeticSpec:
    """Knobs of the task generator (the ``task`` block of the config)."""

    seed: int = 1234
    n_train: int = 20000
    n_val: int = 64
    n_test: int = 256
    min_ops: int = 2
    max_ops: int = 3
    value_max: int = 99
    start_max: int = 50
    operand_max: int = 30
    multiplier_max: int = 9

    @classmethod
    def from_config(cls, block: dict) -> ArithmeticSpec:
        """Build from the config's ``task`` block, ignoring keys that are not knobs."""
        return dataclass_from_block(cls, block)


def _next_operation(value: int, spec: ArithmeticSpec, rng: random.Random) -> tuple[str, int]:
    """Draw an operation ``(op, operand)`` whose result stays in ``[0, value_max]``."""
    choices: list[tuple[str, int]] = []
    if value < spec.value_max:
        choices.append(("+", rng.randint(1, min(spec.operand_max, spec.value_max - value))))
    if value > 0:
        choices.append(("-", rng.randint(1, min(spec.operand_max, value))))
    max_multiplier = min(spec.multiplier_max, spec.value_max // max(value, 1))
    if value > 1 and max_multiplier >= 2:
        choices.append(("*", rng.randint(2, max_multiplier)))
    return rng.choice(choices)


def _apply(value: int, op: str, operand: int) -> int:
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    return value * operand


def make_problem(spec: ArithmeticSpec, rng: random.Random) -> dict[str, str | int]:
    """Draw one problem; return its expression, question, CoT solution and answer."""
    value = rng.randint(2, spec.start_max)
    expression = str(value)
    steps = []
    for index in range(rng.randint(spec.min_ops, spec.max_ops)):
        op, operand = _next_operation(value, spec, rng)
        result = _apply(value, op, operand)
        steps.append(f"{value}{op}{operand}={result}")
        expression = f"({expression}){op}{operand}" if index else f"{expression}{op}{operand}"
        value = result
    solution = "\n".join([*steps, ANSWER_TEMPLATE.format(answer=value)])
    return {
        "question": QUESTION_TEMPLATE.format(expression=expression),
        "solution": solution,
        "answer": str(value),
        "n_ops": len(steps),
    }


def evaluate_expression(question: str) -> int:
    """Evaluate a generated question independently of the generator (for tests).

    Only the characters ``0-9 + - * ( )`` are allowed, so ``eval`` is safe here.
    """
    expression = question.removeprefix("Compute ").removesuffix(".")
    if set(expression) - set("0123456789+-*()"):
        raise ValueError(f"unexpected characters in {question!r}")
    return int(eval(expression, {"__builtins__": {}}))  # noqa: S307


def generate_splits(spec: ArithmeticSpec) -> dict[str, list[dict]]:
    """Generate the train, val and test splits, disjoint by question text.

    Test and validation are drawn first so that their content does not depend
    on the size of the training split.
    """
    rng = random.Random(spec.seed)
    sizes = {"test": spec.n_test, "val": spec.n_val, "train": spec.n_train}
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for split, size in sizes.items():
        rows: list[dict] = []
        attempts = 0
        # a progress bar (every 5 s) for a large split: n_train 10^8 takes minutes
        progress = tqdm(total=size, desc=f"task {split}", unit="problems", mininterval=5,
                        disable=size < 100_000)
        while len(rows) < size:
            attempts += 1
            if attempts > 50 * size + 1000:
                raise ValueError(
                    f"task: cannot draw {size} distinct {split} problems; "
                    f"raise value_max/operand_max or lower n_{split}")
            problem = make_problem(spec, rng)
            if problem["question"] in seen:
                continue
            seen.add(problem["question"])
            rows.append({"id": f"{split}-{len(rows):06d}", **problem})
            progress.update()
        progress.close()
        splits[split] = rows
    return {split: splits[split] for split in SPLITS}


def write_splits(spec: ArithmeticSpec, out_dir: str | Path) -> dict[str, int]:
    """Write ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` to ``out_dir``.

    Each line: ``id``, ``question`` (the problem), ``solution`` (CoT),
    ``answer`` (gold, a string) and ``n_ops``. Returns the row counts.
    """
    out = Path(out_dir)
    return {split: atomic_write_jsonl(out / f"{split}.jsonl", rows)
            for split, rows in generate_splits(spec).items()}

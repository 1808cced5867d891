"""The tiny code task: write a Python function from a spoken chain of integer operations.

A problem describes a composition of integer operations on ``x``; the answer is a
program that computes it, graded by running hidden test inputs in the sandbox
(:mod:`effopd.code_grading`), so every correct program passes (``2*(x+3)-4`` as well as
``(x+3)*2-4``) and a program with the wrong precedence fails::

    Take x, add 3, double, then subtract 4.

    def f(x):
        # x+3
        # (x+3)*2
        return (x+3)*2-4

The solution (the SFT target) reasons in comments, one expression per operation (as
the arithmetic task's chain of thought has one line per operation), and returns the
expression written with the fewest parentheses Python's precedence allows
(:func:`render`): ``-`` binds tighter than ``*``, ``//`` and ``%`` but looser than
``**``, so ``(-x)**2`` and ``-x**2`` differ, as do ``(x+3)*2`` and ``x+3*2``.

Operations (``task.code.operations``): ``add`` k, ``subtract`` k, ``multiply`` by k
(k = 2, 3 read "double", "triple"), ``floordiv`` (floor-divide by k), ``mod``
(remainder mod k), ``square``, ``negate``; constants k in ``[1 or 2, constant_max]``.
The hidden tests are ``n_tests`` distinct inputs in ``[input_min, input_max]`` with
the reference program's outputs; when the reference has parentheses, the inputs are
redrawn until they tell it from the same expression without them (the planted
wrong-precedence program of the tests), unless the two are the same function.

Splits are generated from one fixed seed and are disjoint by problem text; test and
validation are drawn first, so they do not depend on ``n_train``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effopd.config import dataclass_from_block
from effopd.io import atomic_write_jsonl

SPLITS = ("train", "val", "test")
OPERATIONS = ("add", "subtract", "multiply", "floordiv", "mod", "square", "negate")
ENTRY_POINT = "f"
# precedence levels of a rendered expression (higher binds tighter)
ATOM, POWER, UNARY, PRODUCT, SUM = 9, 4, 3, 2, 1


@dataclass(frozen=True)
class CodeTaskSpec:
    """Knobs of the code task (the config's ``task`` block and its ``code`` block)."""

    seed: int = 1234
    n_train: int = 20000
    n_val: int = 64
    n_test: int = 256
    min_ops: int = 2
    max_ops: int = 3
    n_tests: int = 10
    input_min: int = -20
    input_max: int = 20
    constant_max: int = 9
    operations: tuple[str, ...] = field(default=OPERATIONS)

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> CodeTaskSpec:
        """Build from the ``task`` block: its shared keys and its ``code`` block."""
        flat = {**{k: v for k, v in block.items() if k != "code"}, **block.get("code", {})}
        spec = dataclass_from_block(cls, flat)
        unknown = set(spec.operations) - set(OPERATIONS)
        if unknown or not spec.operations:
            raise ValueError(f"task/code/operations: {sorted(unknown) or 'empty'}; "
                             f"allowed: {list(OPERATIONS)}")
        if spec.input_max - spec.input_min + 1 < spec.n_tests:
            raise ValueError(f"task/code: [{spec.input_min}, {spec.input_max}] holds fewer "
                             f"than n_tests = {spec.n_tests} distinct inputs")
        return spec if isinstance(spec.operations, tuple) else \
            dataclass_from_block(cls, {**flat, "operations": tuple(spec.operations)})


def render(text: str, level: int, op: str, k: int | None) -> tuple[str, int]:
    """Apply one operation to an expression ``text`` of precedence ``level``; return the
    new expression with the fewest parentheses and its level.

    ``+ -`` (level 1) and ``* // %`` (level 2) are left-associative, so the left operand
    needs parentheses only when it binds looser; unary ``-`` (3) wraps a looser operand;
    ``**`` (4) is right-associative and binds tighter than unary ``-``, so its base needs
    parentheses unless it is an atom."""
    def wrap(below: int) -> str:
        return f"({text})" if level < below else text
    if op in ("add", "subtract"):
        return f"{wrap(SUM)}{'+' if op == 'add' else '-'}{k}", SUM
    if op in ("multiply", "floordiv", "mod"):
        symbol = {"multiply": "*", "floordiv": "//", "mod": "%"}[op]
        return f"{wrap(PRODUCT)}{symbol}{k}", PRODUCT
    if op == "negate":
        return f"-{wrap(UNARY)}", UNARY
    return f"{wrap(ATOM)}**2", POWER


def apply(value: int, op: str, k: int | None) -> int:
    """One operation on an integer, with Python's semantics (floor division and a
    remainder with the divisor's sign)."""
    return {"add": lambda: value + k, "subtract": lambda: value - k,
            "multiply": lambda: value * k, "floordiv": lambda: value // k,
            "mod": lambda: value % k, "square": lambda: value * value,
            "negate": lambda: -value}[op]()


def phrase(op: str, k: int | None) -> str:
    """The words of one operation."""
    if op == "multiply":
        return {2: "double", 3: "triple"}.get(k, f"multiply by {k}")
    return {"add": f"add {k}", "subtract": f"subtract {k}", "floordiv": f"floor-divide by {k}",
            "mod": f"take the remainder mod {k}", "square": "square",
            "negate": "negate"}[op]


def evaluate(expression: str, x: int) -> int:
    """Value of a rendered expression at ``x`` (only ``x``, digits and ``+-*/%()``)."""
    if set(expression) - set("x0123456789+-*/%()"):
        raise ValueError(f"unexpected characters in {expression!r}")
    return int(eval(expression, {"__builtins__": {}}, {"x": x}))  # noqa: S307


def program(expression: str, steps: list[str] | tuple[str, ...] = ()) -> str:
    """The function ``f``: one comment per intermediate expression, then the return."""
    comments = "".join(f"    # {step}\n" for step in steps)
    return f"def {ENTRY_POINT}(x):\n{comments}    return {expression}"


def test_source(cases: list[tuple[int, int]]) -> str:
    """The hidden test: the program's ``f`` at every input against the reference output."""
    return (f"for _x, _y in {cases!r}:\n"
            f"    assert {ENTRY_POINT}(_x) == _y, f'{ENTRY_POINT}({{_x}}) != {{_y}}'\n")


def without_parentheses(expression: str) -> str:
    """The planted wrong-precedence program's expression: every parenthesis dropped."""
    return expression.replace("(", "").replace(")", "")


def _draw_operation(spec: CodeTaskSpec, previous: str | None,
                    rng: random.Random) -> tuple[str, int | None]:
    choices = [op for op in spec.operations if not (op == previous and op == "negate")]
    op = rng.choice(choices)
    if op in ("square", "negate"):
        return op, None
    return op, rng.randint(1 if op in ("add", "subtract") else 2, spec.constant_max)


def _draw_inputs(spec: CodeTaskSpec, expression: str, rng: random.Random) -> list[int]:
    """``n_tests`` distinct inputs that tell the expression from its paren-free variant
    whenever some input of the range does."""
    domain = range(spec.input_min, spec.input_max + 1)
    wrong = without_parentheses(expression)
    if wrong == expression or all(evaluate(expression, x) == evaluate(wrong, x)
                                  for x in domain):
        return sorted(rng.sample(domain, spec.n_tests))
    while True:
        inputs = sorted(rng.sample(domain, spec.n_tests))
        if any(evaluate(expression, x) != evaluate(wrong, x) for x in inputs):
            return inputs


def make_problem(spec: CodeTaskSpec, rng: random.Random) -> dict[str, Any]:
    """Draw one problem: question, solution (reasoned program), reference expression,
    hidden test source and its cases, number of operations."""
    text, level, steps, ops = "x", ATOM, [], []
    previous = None
    for _ in range(rng.randint(spec.min_ops, spec.max_ops)):
        op, k = _draw_operation(spec, previous, rng)
        text, level = render(text, level, op, k)
        steps.append(text)
        ops.append((op, k))
        previous = op
    words = [phrase(op, k) for op, k in ops]
    question = f"Take x, {', '.join(words[:-1])}, then {words[-1]}." if len(words) > 1 \
        else f"Take x, then {words[0]}."
    inputs = _draw_inputs(spec, text, rng)
    cases = []
    for x in inputs:
        value = x
        for op, k in ops:
            value = apply(value, op, k)
        if evaluate(text, x) != value:  # the rendering is the composition
            raise AssertionError(f"{text!r} at {x}: {evaluate(text, x)} != {value}")
        cases.append((x, value))
    return {"question": question, "solution": program(text, steps[:-1]),
            "answer": program(text), "expression": text, "test": test_source(cases),
            "entry_point": ENTRY_POINT, "n_ops": len(ops)}


def generate_splits(spec: CodeTaskSpec) -> dict[str, list[dict[str, Any]]]:
    """The train, val and test splits, disjoint by question text (test and val first)."""
    rng = random.Random(spec.seed)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, size in {"test": spec.n_test, "val": spec.n_val, "train": spec.n_train}.items():
        rows: list[dict[str, Any]] = []
        attempts = 0
        while len(rows) < size:
            attempts += 1
            if attempts > 50 * size + 1000:
                raise ValueError(f"task: cannot draw {size} distinct {split} problems; raise "
                                 f"task/max_ops or task/code/constant_max or lower n_{split}")
            problem = make_problem(spec, rng)
            if problem["question"] in seen:
                continue
            seen.add(problem["question"])
            rows.append({"id": f"{split}-{len(rows):06d}", **problem})
        splits[split] = rows
    return {split: splits[split] for split in SPLITS}


def write_splits(spec: CodeTaskSpec, out_dir: str | Path) -> dict[str, int]:
    """Write ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` to ``out_dir``.

    Each line: ``id``, ``question``, ``solution`` (the SFT target), ``answer`` (the
    reference program, for reading; grading uses ``test``), ``expression``, ``test``
    (hidden test source), ``entry_point`` and ``n_ops``. Returns the row counts.
    """
    out = Path(out_dir)
    return {split: atomic_write_jsonl(out / f"{split}.jsonl", rows)
            for split, rows in generate_splits(spec).items()}

"""Code benchmark loaders: HumanEval+ / MBPP+ (evalplus releases) and LiveCodeBench.

Each returns problems ``{"id", "problem", ...tests}`` that :mod:`effopd.code_grading`
grades as they are (``grade_programs`` takes a problem with a ``response`` added):

- **evalplus** (``{"source": "evalplus", "dataset": "humaneval" | "mbpp", "version":
  <release tag>}``, or ``path``: a local ``HumanEvalPlus.jsonl.gz`` / ``MbppPlus.jsonl.gz``
  / ``.jsonl``). A release row holds ``task_id``, ``prompt``, ``entry_point``,
  ``canonical_solution``, ``base_input``, ``plus_input`` and ``atol``. evalplus grades by
  differential testing: the program's ``entry_point`` is called on every base and plus
  input and its output is compared with the canonical solution's on the same input
  (equal, else within ``atol`` and rtol 1e-7, with atol 1e-6 for float outputs when
  ``atol`` is 0). Here the canonical solution is the **reference oracle inside the
  test**: the ``test`` source holds the reference's code, the inputs (as Python literals)
  and a ``check(candidate)`` that runs reference and candidate on a fresh copy of each
  input and compares as above, so both run in the same sandbox run (no expected outputs
  computed and cached beforehand). MBPP+ inputs are stored as JSON; the tasks whose
  functions take tuples, sets or complex numbers get them back as evalplus 0.3.1's
  ``mbpp_deserialize_inputs`` does (:func:`mbpp_inputs`).
- **lcb** (LiveCodeBench ``code_generation_lite``: ``{"source": "lcb", "repo_id",
  "revision", "release": "release_v6", "date_from", "date_to"}``, or ``path``: a local
  directory of its ``test*.jsonl`` files). A row holds ``question_id``,
  ``question_title``, ``question_content``, ``platform``, ``contest_date`` (ISO),
  ``starter_code``, ``difficulty``, ``public_test_cases`` (a JSON string),
  ``private_test_cases`` (a JSON string, or base64 of zlib of a pickled JSON string) and
  ``metadata`` (a JSON string; ``func_name`` for functional problems). Problems with
  ``date_from <= contest_date <= date_to`` are kept (as LiveCodeBench's runner). Tests of
  ``testtype`` ``stdin`` become ``stdio`` cases (public first, then private); ``functional``
  tests (LeetCode) become an assert ``test`` that calls ``Solution().<func_name>(*args)``
  with each input line as one JSON argument and compares with the JSON output (a tuple
  result counts as a list).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import pickle
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

from effopd.io import apply_limit

EVALPLUS_FILES = {"humaneval": "HumanEvalPlus", "mbpp": "MbppPlus"}
EVALPLUS_URL = ("https://github.com/evalplus/{repo}_release/releases/download/"
                "{version}/{name}.jsonl.gz")
EVALPLUS_KEYS = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input",
                 "plus_input", "atol")
# LiveCodeBench's releases: release_vN holds the files test.jsonl, test2.jsonl ... testN.jsonl
LCB_RELEASES = {f"release_v{n}": ["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, n + 1)]
                for n in range(1, 7)}
LCB_KEYS = ("question_id", "question_content", "contest_date", "starter_code",
            "public_test_cases", "private_test_cases", "metadata")
LCB_STDIN_FORMAT = ("Read the input from standard input and write the answer to standard "
                    "output (do not test on the sample inputs).")
LCB_STARTER_FORMAT = "Use this starter code:\n```python\n{starter}\n```"


# --- HumanEval+ / MBPP+ -------------------------------------------------------------------

def load_evalplus(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """HumanEval+ or MBPP+ problems, each ``{"id", "problem", "test", "entry_point"}``:
    ``problem`` is the task's prompt in a ``python`` fence, ``test`` the reference-oracle
    check of the module docstring."""
    dataset = spec["dataset"]
    if dataset not in EVALPLUS_FILES:
        raise ValueError(f"evalplus benchmark: dataset {dataset!r} is not one of "
                         f"{sorted(EVALPLUS_FILES)}")
    if spec.get("path"):
        where = str(spec["path"])
        raw = Path(where).read_bytes()
    else:
        name = EVALPLUS_FILES[dataset]
        where = EVALPLUS_URL.format(repo=name.lower(), version=spec["version"], name=name)
        raw = _download(where)
    rows = apply_limit(_jsonl_rows(raw, where), spec.get("limit"), where)
    problems = []
    for number, row in enumerate(rows, start=1):
        missing = [key for key in EVALPLUS_KEYS if key not in row]
        if missing:
            raise ValueError(f"{where}: row {number} has no {missing} (an evalplus release "
                             f"row has {list(EVALPLUS_KEYS)})")
        inputs = row["base_input"] + row["plus_input"]
        if dataset == "mbpp":
            inputs = mbpp_inputs(row["task_id"], inputs)
        problems.append({
            "id": str(row["task_id"]),
            "problem": f"```python\n{row['prompt'].strip()}\n```",
            "test": evalplus_test(row["prompt"] + row["canonical_solution"],
                                  row["entry_point"], inputs, float(row["atol"])),
            "entry_point": row["entry_point"],
        })
    return _unique(problems, where)


def evalplus_test(reference: str, entry_point: str, inputs: list[Any], atol: float) -> str:
    """Test source of one evalplus task: ``check(candidate)`` calls the reference (its own
    namespace) and the candidate on a deep copy of each input and compares the outputs
    (:data:`_COMPARE`). Inputs are written as Python literals (``inf``/``nan`` defined)."""
    return (f"import copy as _effopd_copy\ninf = float('inf')\nnan = float('nan')\n"
            f"_EFFOPD_REFERENCE = {reference!r}\n_EFFOPD_ENTRY = {entry_point!r}\n"
            f"_EFFOPD_ATOL = {atol!r}\n_EFFOPD_INPUTS = {inputs!r}\n" + _COMPARE)


_COMPARE = '''

def _effopd_is_floats(value):
    if isinstance(value, float):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(item, float) for item in value)


def _effopd_close(out, exp, atol):
    if isinstance(exp, (list, tuple)):
        return isinstance(out, (list, tuple)) and len(out) == len(exp) and all(
            _effopd_close(o, e, atol) for o, e in zip(out, exp))
    if isinstance(out, bool) or isinstance(exp, bool) or \\
            not isinstance(out, (int, float)) or not isinstance(exp, (int, float)):
        return out == exp
    return abs(out - exp) <= atol + 1e-07 * abs(exp)


def check(candidate):
    scope = {"__name__": "reference"}
    exec(compile(_EFFOPD_REFERENCE, "reference.py", "exec"), scope)
    reference = scope[_EFFOPD_ENTRY]
    for index, args in enumerate(_EFFOPD_INPUTS):
        expected = reference(*_effopd_copy.deepcopy(args))
        output = candidate(*_effopd_copy.deepcopy(args))
        if output == expected:
            continue
        atol = 1e-06 if _EFFOPD_ATOL == 0 and _effopd_is_floats(expected) else _EFFOPD_ATOL
        assert atol != 0 and type(output) is type(expected) and \\
            _effopd_close(output, expected, atol), f"wrong output on input {index}"
'''


def _tuples(value: Any) -> Any:
    """Every list inside ``value`` (and ``value`` itself) as a tuple."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


# MBPP+ tasks whose inputs evalplus 0.3.1 converts after reading the JSON release
# (evalplus/data/mbpp.py, mbpp_deserialize_inputs): task number -> one input's conversion.
_EACH_ARG_TUPLE = (2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579,
                   596, 616, 630, 726, 740, 744, 809)
_EACH_ARG_ROWS_TUPLE = (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780)
_FIRST_ROWS_TUPLE = (75, 413, 444, 753)
_SECOND_TUPLE = (106, 750)
_FIRST_TUPLE = (250, 405, 446, 617, 720, 763, 808)
_EACH_ARG_ROWS_TUPLE_THEN_TUPLE = (259, 401, 445)
_ALL_TUPLES = (580, 615, 791)
_MBPP_CONVERSIONS = {
    **{n: lambda a: [tuple(x) for x in a] for n in _EACH_ARG_TUPLE},
    **{n: lambda a: [[tuple(r) for r in x] for x in a] for n in _EACH_ARG_ROWS_TUPLE},
    **{n: lambda a: [[tuple(r) for r in a[0]], a[1]] for n in _FIRST_ROWS_TUPLE},
    **{n: lambda a: [a[0], tuple(a[1])] for n in _SECOND_TUPLE},
    **{n: lambda a: [tuple(a[0]), a[1]] for n in _FIRST_TUPLE},
    **{n: lambda a: [tuple(tuple(r) for r in x) for x in a]
       for n in _EACH_ARG_ROWS_TUPLE_THEN_TUPLE},
    **{n: _tuples for n in _ALL_TUPLES},
    115: lambda a: [[set(x) if isinstance(x, list) and x else {} for x in a[0]]],
    124: lambda a: [float(a[0]), complex(a[1])],
    252: lambda a: [complex(a[0])],
    278: lambda a: [tuple(tuple(x) if isinstance(x, list) else x for x in a[0])],
    307: lambda a: [tuple(a[0]), a[1], a[2]],
    722: lambda a: [{key: tuple(value) for key, value in a[0].items()}, *a[1:]],
}


def mbpp_inputs(task_id: str, inputs: list[Any]) -> list[Any]:
    """MBPP+ inputs as the task's function takes them (tuples, sets, complex numbers):
    the conversions of evalplus 0.3.1's ``mbpp_deserialize_inputs``, others unchanged."""
    convert = _MBPP_CONVERSIONS.get(int(str(task_id).rsplit("/", 1)[-1]))
    return [convert(args) for args in inputs] if convert else inputs


# --- LiveCodeBench --------------------------------------------------------------------------

def load_lcb(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """LiveCodeBench problems of one release in a contest-date window, each ``{"id",
    "problem", "stdio"}`` (stdin problems) or ``{"id", "problem", "test"}`` (functional),
    plus ``platform``, ``difficulty`` and ``contest_date``."""
    release = spec["release"]
    if release not in LCB_RELEASES:
        raise ValueError(f"lcb benchmark: release {release!r} is not one of "
                         f"{sorted(LCB_RELEASES)}")
    start, end = (datetime.fromisoformat(str(spec[key])) for key in ("date_from", "date_to"))
    rows: list[tuple[str, dict[str, Any]]] = []
    for name in LCB_RELEASES[release]:
        if spec.get("path"):
            where = str(Path(spec["path"]) / name)
            raw = Path(where).read_bytes()
        else:
            where = f"{spec['repo_id']}@{spec['revision']}/{name}"
            raw = _hub_file(spec["repo_id"], spec["revision"], name)
        rows += [(where, row) for row in _jsonl_rows(raw, where)]
    problems = []
    for where, row in rows:
        missing = [key for key in LCB_KEYS if key not in row]
        if missing:
            raise ValueError(f"{where}: problem {row.get('question_id')!r} has no {missing}")
        if start <= datetime.fromisoformat(row["contest_date"]) <= end:
            problems.append(_lcb_problem(row, where))
    problems = apply_limit(problems, spec.get("limit"), str(spec.get("path") or
                                                            spec.get("repo_id")))
    return _unique(problems, str(spec.get("path") or spec.get("repo_id")))


def lcb_tests(text: str) -> list[dict[str, Any]]:
    """A test-case field: JSON, or LiveCodeBench's compressed form, base64 of zlib of a
    pickled JSON string (unpickled with every class refused: only the string loads)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    unpickled = _StringsOnly(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
    return json.loads(unpickled)


class _StringsOnly(pickle.Unpickler):
    """An unpickler that loads plain values only (a downloaded file runs no code)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case field")


def _lcb_problem(row: dict[str, Any], where: str) -> dict[str, Any]:
    question = row["question_id"]
    try:
        cases = lcb_tests(row["public_test_cases"]) + lcb_tests(row["private_test_cases"])
        metadata = json.loads(row["metadata"]) if isinstance(row["metadata"], str) \
            else row["metadata"]
    except (ValueError, zlib.error, pickle.UnpicklingError) as err:
        raise ValueError(f"{where}: problem {question!r}: unreadable tests ({err})") from err
    kinds = {case.get("testtype") for case in cases}
    if not cases or len(kinds) != 1 or kinds - {"stdin", "functional"}:
        raise ValueError(f"{where}: problem {question!r} needs tests of one testtype, "
                         f"stdin or functional (got {sorted(map(str, kinds))})")
    starter = row["starter_code"].strip()
    form = LCB_STARTER_FORMAT.format(starter=starter) if starter else LCB_STDIN_FORMAT
    problem = {"id": str(question), "problem": f"{row['question_content'].strip()}\n\n{form}",
               "platform": row.get("platform"), "difficulty": row.get("difficulty"),
               "contest_date": row["contest_date"]}
    if kinds == {"stdin"}:
        problem["stdio"] = [{"input": c["input"], "output": c["output"]} for c in cases]
    else:
        if not metadata.get("func_name"):
            raise ValueError(f"{where}: functional problem {question!r} has no "
                             "metadata.func_name")
        problem["test"] = lcb_functional_test(metadata["func_name"],
                                              [(c["input"], c["output"]) for c in cases])
    return problem


def lcb_functional_test(func_name: str, cases: list[tuple[str, str]]) -> str:
    """Assert source of a functional (LeetCode) problem: each input line is one JSON
    argument of ``Solution().<func_name>``; the result (a tuple as a list) must equal the
    JSON output."""
    return (f"import json as _effopd_json\n_EFFOPD_CASES = {cases!r}\n"
            f"for _effopd_index, (_effopd_in, _effopd_out) in enumerate(_EFFOPD_CASES):\n"
            f"    _effopd_args = [_effopd_json.loads(line) for line in "
            f"_effopd_in.split('\\n') if line.strip()]\n"
            f"    _effopd_result = Solution().{func_name}(*_effopd_args)\n"
            f"    if isinstance(_effopd_result, tuple):\n"
            f"        _effopd_result = list(_effopd_result)\n"
            f"    assert _effopd_result == _effopd_json.loads(_effopd_out), "
            f"f'wrong output on case {{_effopd_index}}'\n")


# --- shared -------------------------------------------------------------------------------

def _jsonl_rows(raw: bytes, where: str) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file's bytes (gzip-compressed or not)."""
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    rows = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}:{number}: not valid JSON ({err})") from err
    return rows


def _unique(problems: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    ids = [p["id"] for p in problems]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise ValueError(f"{where}: id {duplicate!r} occurs more than once")
    return problems


def _download(url: str) -> bytes:
    """The bytes at a pinned release URL (the network path; not run by the tests)."""
    from urllib.request import urlopen

    with urlopen(url, timeout=300) as response:  # noqa: S310 (a pinned https URL)
        return response.read()


def _hub_file(repo_id: str, revision: str, filename: str) -> bytes:
    """One file of a Hub dataset repo at a pinned revision (the network path)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, repo_type="dataset",
                                revision=revision)).read_bytes()

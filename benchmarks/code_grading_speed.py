"""Speed of the code grader: programs graded per second and the sandbox's per-item overhead.

Grades N copies of a trivial passing program (``def f(x): return x + 1`` against
``assert f(1) == 2``) at 1 and 2 workers, in each isolation that works here
(``namespaces``, ``rlimits``), and runs the same program as a bare subprocess
(``python -I -c PROGRAM``, no sandbox, no harness) as the baseline. Prints one table:

- ``programs/s``: N / wall seconds of the whole call (probe excluded: it is cached);
- ``ms/item``: wall milliseconds per program per worker (wall * workers / N);
- ``overhead ms``: ms/item minus the bare subprocess's ms/item at the same workers;
- ``x bare``: ms/item over the bare subprocess's.

The ``batched`` rows grade ``N`` distinct programs (so none is deduplicated) with
:func:`grade_programs_batched` (64 to a sandbox run, one forked child each), the path of
the training reward and of the code task's evaluation.

    python benchmarks/code_grading_speed.py            # N = 40
    python benchmarks/code_grading_speed.py -n 100
"""

from __future__ import annotations

import argparse
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from effopd.code_grading import (
    Limits,
    detect_isolation,
    grade_programs,
    grade_programs_batched,
)

PROGRAM = "def f(x):\n    return x + 1\n"
TEST = "assert f(1) == 2\n"


def bare(python: str, n: int, workers: int) -> float:
    """Wall seconds to run the program and its test ``n`` times as plain subprocesses."""
    def one(_: int) -> None:
        subprocess.run([python, "-I", "-c", PROGRAM + TEST], check=True,
                       capture_output=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - start


def sandboxed(mode: str, n: int, workers: int) -> float:
    """Wall seconds for :func:`grade_programs` to grade ``n`` copies (all must pass)."""
    records = [{"response": PROGRAM, "test": TEST}] * n
    start = time.perf_counter()
    rows = grade_programs(records, Limits(timeout_s=30), workers=workers, isolation=mode)
    wall = time.perf_counter() - start
    bad = [row for row in rows if row["status"] != "passed"]
    if bad:
        raise SystemExit(f"{mode}: {len(bad)} trivial programs did not pass: {bad[0]}")
    return wall


def batched(mode: str, n: int, workers: int) -> float:
    """Wall seconds for :func:`grade_programs_batched` to grade ``n`` distinct programs."""
    records = [{"response": f"def f(x):\n    return x + 1 + 0 * {i}\n", "test": TEST}
               for i in range(n)]
    start = time.perf_counter()
    rows = grade_programs_batched(records, Limits(timeout_s=30), workers=workers,
                                  batch_size=64, isolation=mode)
    wall = time.perf_counter() - start
    if any(row["status"] != "passed" or not row["batched"] for row in rows):
        raise SystemExit(f"{mode}: a trivial program did not pass in its batch")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="programs per measurement")
    args = parser.parse_args()
    isolations = {}
    for mode in ("namespaces", "rlimits"):
        try:
            isolations[mode] = detect_isolation(mode)
        except RuntimeError as err:
            print(f"{mode}: not available here ({err})")
    python = next(iter(isolations.values())).python
    print(f"{args.n} trivial programs per row; interpreter {python}\n")
    print("| isolation | workers | programs/s | ms/item | overhead ms | x bare |")
    print("| --- | --- | --- | --- | --- | --- |")
    for workers in (1, 2):
        base = bare(python, args.n, workers) * workers / args.n * 1000
        print(f"| bare subprocess | {workers} | {1000 * workers / base:.1f} | {base:.1f} "
              f"| 0 | 1.00 |")
        for mode, iso in isolations.items():
            ms = sandboxed(mode, args.n, workers) * workers / args.n * 1000
            print(f"| {iso.name} | {workers} | {1000 * workers / ms:.1f} | {ms:.1f} "
                  f"| {ms - base:.1f} | {ms / base:.2f} |")
            ms = batched(mode, 4 * args.n, workers) * workers / (4 * args.n) * 1000
            print(f"| {iso.name}, batched | {workers} | {1000 * workers / ms:.1f} | {ms:.1f} "
                  f"| {ms - base:.1f} | {ms / base:.2f} |")


if __name__ == "__main__":
    main()

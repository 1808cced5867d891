"""Math-verify grading that never hangs (SPEC section 5, "Grading").

One item is graded as the paper does, gold first::

    correct = verify(parse("$" + gold + "$"), parse("$\\boxed{" + last_boxed(response) + "}$"))

math-verify's own timeouts rely on ``SIGALRM``, which fires only in a main thread and only
when sympy returns to the interpreter; a tower of powers such as ``10^{10^{10^{10}}}`` can
keep a C routine busy for tens of seconds past the alarm. So items are graded in a small
pool of forked worker processes, one item per worker at a time; the parent holds each
item's deadline and SIGKILLs a worker that passes it. Each item gets one status:

- ``ok``: graded; ``correct`` is the verdict.
- ``no_answer``: the response holds no ``\\boxed{}``; counted wrong.
- ``timeout``: the worker was killed at the deadline, or math-verify's own alarm fired
  and no comparison succeeded; counted wrong.
- ``error``: an exception, a gold answer math-verify cannot parse, a dead worker, or
  a malformed record (``gold`` or ``response`` missing, null or not a string; an
  integer gold is read as its decimal string); counted wrong, message in ``error``.
  A line of a graded file that is not a JSON object gets ``error`` too, with its
  line number; the other lines are graded as usual.

Each distinct ``(gold, extracted)`` pair is graded once: duplicates within a call share
its result, and ``ok`` verdicts are remembered for the rest of the process
(math-verify is deterministic for a pair; timeouts and errors are not remembered). A
series of checkpoints answers the same problems with the same few numbers, so most
items of an evaluation never reach a worker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from multiprocessing.connection import Connection, wait
from typing import Any

from math_verify import parse, verify
from math_verify.errors import TimeoutException
from tqdm import tqdm

from effopd.io import atomic_write_jsonl, iter_jsonl

STATUSES = ("ok", "no_answer", "error", "timeout")
_VERDICTS: dict[tuple[str, str, int], bool] = {}  # (gold, extracted, mv_timeout) -> correct
_MAX_VERDICTS = 1_000_000
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def extract_last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    Braces are matched with a depth counter, so ``\\boxed{\\frac{1}{2}}`` gives
    ``\\frac{1}{2}``. Returns None when there is no box or the last one is unbalanced.
    """
    start = max(text.rfind(command + "{") for command in _BOX_COMMANDS)
    if start < 0:
        return None
    open_brace = text.index("{", start)
    depth = 0
    for pos in range(open_brace, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1:pos]
    return None


class _TimeoutLog(logging.Handler):
    """Counts math-verify's "Timeout during ..." warnings (it swallows its own alarms)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("Timeout during")


def _grade_one(gold: str, extracted: str, mv_timeout: int) -> tuple[bool, str, str | None]:
    """Grade one boxed answer against ``gold``; return (correct, status, error)."""
    timeouts = _TimeoutLog()
    logger = logging.getLogger("math_verify")
    logger.addHandler(timeouts)
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=mv_timeout)
        pred_parsed = parse(f"$\\boxed{{{extracted}}}$", parsing_timeout=mv_timeout)
        correct = bool(gold_parsed) and verify(gold_parsed, pred_parsed,
                                               timeout_seconds=mv_timeout)
    finally:
        logger.removeHandler(timeouts)
    if correct:
        return True, "ok", None
    if timeouts.count:
        return False, "timeout", "math-verify's own timeout fired"
    if not gold_parsed:
        return False, "error", f"math-verify could not parse the gold answer {gold!r}"
    return False, "ok", None


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (``PR_SET_PDEATHSIG``).

    A forked worker holds copies of every pipe end its parent had, so a parent
    killed with SIGKILL never closes them: without this the worker would wait
    for ever and keep the parent's stderr open. Elsewhere a no-op.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _worker_loop(conn: Connection, mv_timeout: int, parent_pid: int | None = None) -> None:
    """Worker process: receive (gold, extracted) pairs until the pipe closes (or the
    parent dies)."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    logger = logging.getLogger("math_verify")
    logger.setLevel(logging.WARNING)  # _TimeoutLog must see its warnings ...
    logger.propagate = False  # ... which the statuses record, so keep stderr quiet
    while True:
        try:
            gold, extracted = conn.recv()
        except EOFError:
            return
        try:
            result = _grade_one(gold, extracted, mv_timeout)
        except BaseException as err:  # math-verify's TimeoutException is a BaseException
            status = "timeout" if isinstance(err, TimeoutException) else "error"
            result = (False, status, f"{type(err).__name__}: {err}")
        conn.send(result)


_warmed_up = False


def _warm_up() -> None:
    """Parse and verify one trivial pair in this process, once, so that forked workers
    inherit math-verify's lazily built parsers (about 0.14 s of CPU in each fresh
    process otherwise: per worker, per call). No alarms: the parent may not be the
    main thread."""
    global _warmed_up
    if not _warmed_up:
        _warmed_up = True
        loggers = [logging.getLogger(f"math_verify.{name}") for name in ("parser", "grader")]
        levels = [logger.level for logger in loggers]
        for logger in loggers:  # quiet its "Timeout is disabled" warnings
            logger.setLevel(logging.ERROR)
        try:
            with contextlib.suppress(Exception):  # a warm-up: workers report real failures
                verify(parse("$1$", parsing_timeout=None),
                       parse("$\\boxed{1}$", parsing_timeout=None), timeout_seconds=None)
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


class _Worker:
    """One grading process, its pipe, and the item it is busy with.

    ``fork`` (default): forked from this process, inheriting the warmed-up parsers.
    ``forkserver``: forked from a single-threaded server that preloaded this module,
    for callers with other threads running (verl's reward workers grade from executor
    threads, and forking a threaded process can leave a lock held in the child). Its
    worker's parent is the server, so it relies on EOF of the pipe, not PR_SET_PDEATHSIG.
    """

    def __init__(self, mv_timeout: int, start_method: str = "fork") -> None:
        context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            context.set_forkserver_preload([__name__])
        self.conn, child = context.Pipe()
        parent = os.getpid() if start_method == "fork" else None
        self.proc = context.Process(target=_worker_loop, args=(child, mv_timeout, parent),
                                    daemon=True)
        self.proc.start()
        child.close()
        self.index: int | None = None
        self.deadline = math.inf

    def stop(self) -> None:
        self.conn.close()
        if self.proc.is_alive():
            self.proc.kill()  # SIGKILL: sympy stuck in C ignores anything gentler
        self.proc.join()


def record_fault(record: Any) -> str | None:
    """Why a record cannot be graded (None if it can): not an object, or ``gold`` or
    ``response`` missing, null or not a string (an integer gold is accepted)."""
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    for key in ("gold", "response"):
        value = record.get(key)
        if key not in record:
            return f"no {key!r} key (keys: {sorted(record)})"
        if value is None:
            return f"{key!r} is null"
        if not isinstance(value, str) and not (key == "gold" and isinstance(value, int)
                                               and not isinstance(value, bool)):
            return f"{key!r} is not a string ({type(value).__name__})"
    return None


def grade_records(records: list[dict[str, Any]], timeout_s: float = 5.0, workers: int = 2,
                  progress: bool = True, start_method: str = "fork") -> list[dict[str, Any]]:
    """Grade each record's ``response`` against its ``gold``, at most ``timeout_s`` per item.

    Returns copies of the records, in order, with ``correct``, ``status``, ``extracted``
    and ``error`` added. ``start_method``: how the worker processes start (see
    :class:`_Worker`; ``forkserver`` from a thread of a threaded process).
    """
    if timeout_s <= 0 or workers < 1:
        raise ValueError(f"need timeout_s > 0 and workers >= 1, got {timeout_s}, {workers}")
    out = []
    for record in records:
        problem = record_fault(record)
        if problem is not None:
            out.append(dict(record, extracted=None, correct=False, status="error",
                            error=problem))
            continue
        extracted = extract_last_boxed(record["response"])
        out.append(dict(record, extracted=extracted, correct=False, error=None,
                        status="no_answer" if extracted is None else None))
    mv_timeout = max(1, int(timeout_s / 2))  # math-verify's alarm takes whole seconds
    first: dict[tuple[str, str, int], int] = {}  # pair -> the index of the item graded
    copies: list[tuple[int, int]] = []  # (duplicate, graded) items
    for i, row in enumerate(out):
        if row["status"] is not None:
            continue
        key = (str(row["gold"]), row["extracted"], mv_timeout)
        if key in _VERDICTS:
            row.update(correct=_VERDICTS[key], status="ok")
        elif key in first:
            copies.append((i, first[key]))
        else:
            first[key] = i
    queue = deque(first.values())
    bar = tqdm(total=len(out), desc="grading", unit="item", disable=not progress)
    bar.update(len(out) - len(queue))
    if queue:
        _warm_up()
    pool = [_Worker(mv_timeout, start_method) for _ in range(min(workers, len(queue)))]

    def feed(slot: int) -> None:
        """Hand the next queued item to the worker in ``slot``, or mark it idle."""
        worker = pool[slot]
        worker.index, worker.deadline = None, math.inf
        if queue:
            worker.index = queue.popleft()
            worker.conn.send((str(out[worker.index]["gold"]), out[worker.index]["extracted"]))
            worker.deadline = time.monotonic() + timeout_s

    def finish(slot: int, result: tuple[bool, str, str | None], restart: bool) -> None:
        """Record the result of the item in ``slot``; replace the worker if asked; feed it."""
        out[pool[slot].index].update(zip(("correct", "status", "error"), result, strict=True))
        bar.update(1)
        if restart:
            pool[slot].stop()
            pool[slot] = _Worker(mv_timeout, start_method)
        feed(slot)

    try:
        for slot in range(len(pool)):
            feed(slot)
        while any(w.index is not None for w in pool):
            next_deadline = min(w.deadline for w in pool)
            ready = wait([w.conn for w in pool if w.index is not None],
                         timeout=max(0.0, next_deadline - time.monotonic()))
            for slot, worker in enumerate(pool):
                if worker.index is None:
                    continue
                if worker.conn in ready:
                    try:
                        result = worker.conn.recv()
                    except EOFError:  # the worker died: segfault, OOM kill, os._exit
                        worker.proc.join(timeout=1)
                        message = f"worker died (exit code {worker.proc.exitcode})"
                        finish(slot, (False, "error", message), restart=True)
                    else:
                        finish(slot, result, restart=False)
                elif time.monotonic() >= worker.deadline:
                    message = f"no verdict within {timeout_s} s; worker killed"
                    finish(slot, (False, "timeout", message), restart=True)
    finally:
        for worker in pool:
            worker.stop()
        bar.close()
    for duplicate, graded in copies:
        out[duplicate].update(correct=out[graded]["correct"], status=out[graded]["status"],
                              error=out[graded]["error"])
    if len(_VERDICTS) > _MAX_VERDICTS:
        _VERDICTS.clear()
    _VERDICTS.update(((str(out[i]["gold"]), out[i]["extracted"], mv_timeout), out[i]["correct"])
                     for i in first.values() if out[i]["status"] == "ok")
    return out


def grade_file(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str],
               timeout_s: float = 5.0, workers: int = 2) -> dict[str, int]:
    """Grade a JSONL file of ``{"gold", "response", ...}`` rows into ``output_path``.

    One output line per non-blank input line, in order. A line that is not a JSON
    object becomes ``{"line", "raw", "status": "error", "error"}``; a record with a
    bad ``gold`` or ``response`` gets status ``error`` (see :func:`record_fault`).
    Returns the number of items per status (every status present, zeros included).
    """
    records: list[dict[str, Any]] = []
    bad: dict[int, dict[str, Any]] = {}
    for line_no, line, row, error in iter_jsonl(input_path, encoding_errors="replace"):
        if error is not None:
            fault = f"line {line_no}: not valid JSON ({error})"
        else:
            fault = None if isinstance(row, dict) else \
                f"line {line_no}: not a JSON object ({type(row).__name__})"
        if fault is not None:
            bad[len(records)] = {"line": line_no, "raw": line.rstrip("\n")[:200],
                                 "correct": False, "status": "error", "error": fault}
        records.append(row if fault is None else {})
    good = [i for i in range(len(records)) if i not in bad]
    graded_good = iter(grade_records([records[i] for i in good], timeout_s=timeout_s,
                                     workers=workers))
    graded = [bad[i] if i in bad else next(graded_good) for i in range(len(records))]
    atomic_write_jsonl(output_path, graded)
    counts = Counter(row["status"] for row in graded)
    return {status: counts.get(status, 0) for status in STATUSES}

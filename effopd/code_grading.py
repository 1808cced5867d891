"""Sandboxed execution grading of generated programs (SPEC section 5, "Code").

An item is a model's response and its hidden tests. The program is the response's last
```` ```python ```` fenced block (else its last unlabelled fenced block, else the whole
text: :func:`extract_code`). Two kinds of tests, as in the code benchmarks:

- **assert** (HumanEval+ / MBPP+): ``test`` is Python source run in the program's
  namespace after the program; asserts at module level (MBPP) or a
  ``check(candidate)`` function called with the program's ``entry_point`` (HumanEval).
- **stdio** (LiveCodeBench): ``stdio`` is a list of ``{"input", "output"}`` cases; the
  program runs once per case with ``input`` on its stdin, and passes the case when its
  stdout equals ``output`` line by line after trailing white space is dropped
  (:func:`same_output`). The item stops at its first case that does not pass.

**A run** is one process tree in its own session (process group), launched by
``effopd/sandbox_launch.py``, with: a hard wall-clock deadline (the grader SIGKILLs
the group at ``timeout_s``), limits on CPU seconds, address space, file size,
processes and open files, an empty working directory, an environment reduced to
``PATH``, ``LANG``, ``HOME`` and ``TMPDIR``, stdout and stderr read with a byte cap,
and a verdict written by a small harness on a separate pipe and signed with a fresh
nonce (so a program that calls ``os._exit(0)`` or prints "passed" does not pass).

**Isolation**, detected once per process by launching a real probe program
(:func:`detect_isolation`), recorded in every result's ``sandbox`` field:

- ``namespaces+uid``: ``unshare --net --pid --mount --ipc --uts --fork --kill-child``
  (util-linux). No network (only a down loopback), its own process tree (killing its
  first process kills every process in it), the whole filesystem read-only except a
  fresh, size-capped tmpfs on ``/tmp`` (its working directory ``/tmp/sandbox``) and on
  ``/dev/shm``, and a uid of its own per run, so ``RLIMIT_NPROC`` caps a fork
  bomb and root-only files stay unreadable. Needs root, or:
- ``userns``: the same with ``--user --map-root-user`` for a non-root grader; the
  program keeps the grader's uid, so ``RLIMIT_NPROC`` counts the grader's processes too.
- ``rlimits+uid`` / ``rlimits``: the fallback when namespaces do not work: the limits,
  the process group and (as root) a uid of its own per run, whose processes are all
  SIGKILLed after each run. **Not** prevented: network access, writes to world-writable
  directories such as ``/tmp``, reading world-readable files; without ``+uid`` a
  program that leaves its process group with ``setsid`` may outlive its run.

**Statuses** (one per item; :data:`STATUSES`), with a ``reason``:

- ``passed``: every test passed (a signed verdict; for stdio, every case's output).
- ``failed``: the program ran and is wrong: a failed assertion, a wrong output, an
  uncaught exception, ``sys.exit`` before the tests, or ``syntax_error`` (it does not
  compile; its reason starts with ``syntax_error`` so it can be told apart).
- ``timeout``: killed at the wall-clock deadline (or at the batch's global deadline).
- ``crashed``: ended abnormally: ``memory_limit`` (MemoryError), ``resource_limit``
  (fork, file size or open files refused: EAGAIN, EFBIG, EMFILE...), ``cpu_limit``
  (SIGXCPU), killed by another signal, or exited without a verdict (``os._exit``). In
  the namespace modes the launcher reports a signal N as exit code 128 + N, so a
  program that exits with such a code itself reads as killed by N (crashed either way).
- ``sandbox_error``: the grader's fault, not the program's: the launcher failed, a
  malformed record, or the batch's global deadline passed before the item started.

Grading is parallel and bounded: at most ``workers`` runs at a time, one event loop
(no threads) that waits on the runs' pipes and pidfds until the next deadline; every
run ends by its deadline, and ``total_timeout_s`` bounds the whole batch.

**Batches** (:func:`grade_programs_batched`, for many short assert-mode items such as
RL rollouts): identical (program, tests) items are graded once; the rest go
``batch_size`` to a run. The run is the same sandbox (namespaces, limits, uid), but
its process is :data:`BATCH_HARNESS`, which forks one child per item: the child puts
itself in its own process group, sets its own ``RLIMIT_CPU``, sends its output to
``/dev/null`` and reports on a pipe of its own; the harness SIGKILLs the child's group
at the item's wall-clock deadline and writes one signed verdict line per item. Items
stay separate processes (no state passes from one to the next); an item whose verdict
is missing because its batch ended early (a program that kills its harness) is graded
again on its own. A run costs about 90 ms (two interpreters and the namespaces), a
batched item a fork: the difference between a reward that costs more than the
training step and one that does not.

**Scores** (:func:`summarize_code_grades`): a sample is correct when its status is
``passed``; avg@n and the unbiased pass@k = 1 - C(n-c, k) / C(n, k) come from
:mod:`effopd.metrics` (one definition for math and code).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import pandas as pd

from effopd.metrics import summarize_grades

STATUSES = ("passed", "failed", "timeout", "crashed", "sandbox_error")
ISOLATIONS = ("auto", "namespaces", "rlimits")
LAUNCHER = Path(__file__).with_name("sandbox_launch.py")
LAUNCH_FAILED = 121  # sandbox_launch.LAUNCH_FAILED (the launcher imports nothing of ours)
UID_BASE = 0x60000000  # run uids: UID_BASE + (grader pid << 8) + 0..255, unused by real users
MAX_WORKERS = 256
STDERR_KEPT = 2000  # characters of stderr kept in a result (its tail)
_UNSHARE_SIGKILLED = "unshare: sigprocmask unblock failed"
_NAMESPACES = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
               "--ipc", "--uts"]
_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)

# Both harnesses run inside the sandbox and import nothing of ours; the verdict of an
# exception (and which errno counts as a resource limit) is this one piece of source,
# pasted into each where it says FAULT_SOURCE.
FAULT_SOURCE = r'''
_LIMIT_ERRNOS = (errno.EAGAIN, errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.ENOSPC,
                 errno.ENOMEM)


def _fault(err):
    if isinstance(err, MemoryError):
        return "crashed", "memory_limit"
    if isinstance(err, OSError) and err.errno in _LIMIT_ERRNOS:
        return "crashed", f"resource_limit: {errno.errorcode[err.errno]}: {err}"
    if isinstance(err, SystemExit):
        return "failed", f"exit: {err.code}"
    if isinstance(err, AssertionError):
        return "failed", f"assertion: {err}"
    return "failed", f"exception: {type(err).__name__}: {err}"
'''


# The harness runs inside the sandbox as the program's process: it compiles and runs the
# program and the tests, and writes "<nonce> <status> <reason>" on fd 3. Forked children
# of the program never write a verdict (they exit at the first line that reports).
HARNESS = r'''
import errno, os, sys
_MAIN = os.getpid()
with open("nonce") as _f:
    _NONCE = _f.read().strip()
os.unlink("nonce")
_MODE, _ENTRY = sys.argv[1], sys.argv[2]
#FAULT_SOURCE#


def _report(status, reason=""):
    if os.getpid() != _MAIN:
        os._exit(1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    reason = " ".join(str(reason).split())[:300]
    os.write(3, f"{_NONCE} {status} {reason}\n".encode("utf-8", "replace"))
    os._exit(0)




try:
    with open("solution.py", encoding="utf-8", errors="replace") as _f:
        _source = _f.read()
    try:
        _code = compile(_source, "solution.py", "exec")
    except (SyntaxError, ValueError) as err:
        _report("failed", f"syntax_error: {type(err).__name__}: {err}")
    _scope = {"__name__": "__main__" if _MODE == "stdio" else "solution",
              "__builtins__": __builtins__}
    if _MODE == "stdio":
        try:
            exec(_code, _scope)
        except SystemExit as err:
            if err.code not in (None, 0):
                raise
        _report("ran")
    exec(_code, _scope)
    with open("tests.py", encoding="utf-8") as _f:
        exec(compile(_f.read(), "tests.py", "exec"), _scope)
    if _ENTRY and callable(_scope.get("check")):
        _scope["check"](_scope[_ENTRY])
    _report("passed")
except BaseException as err:
    if os.getpid() != _MAIN:
        os._exit(1)
    if not isinstance(err, (SystemExit, MemoryError)):
        import traceback
        traceback.print_exc()
    _report(*_fault(err))
'''.replace("#FAULT_SOURCE#", FAULT_SOURCE)


# The batch harness: one sandbox run grades many assert-mode items, each in a forked child
# of its own (own process group, own RLIMIT_CPU, output to /dev/null), and writes
# "<nonce> <index> <wall_s> <status> <reason>" per item on fd 3, then "<nonce> done".
BATCH_HARNESS = r"""
import errno, json, os, resource, select, signal, sys, time
with open("nonce") as _f:
    _NONCE = _f.read().strip()
os.unlink("nonce")
with open("batch.json", encoding="utf-8") as _f:
    _ITEMS = json.load(_f)
os.unlink("batch.json")
_TIMEOUT, _CPU = float(sys.argv[1]), int(sys.argv[2])
_TIMEOUT_TEXT = sys.argv[1]
#FAULT_SOURCE#
_KNOWN = ("passed", "failed", "crashed")


def _child(item, pipe):
    me = os.getpid()
    os.setpgid(0, 0)
    os.close(3)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU, _CPU + 1))

    def report(status, reason=""):
        if os.getpid() != me:
            os._exit(1)
        reason = " ".join(str(reason).split())[:300]
        os.write(pipe, f"{status} {reason}\n".encode("utf-8", "replace"))
        os._exit(0)

    try:
        try:
            code = compile(item["code"], "solution.py", "exec")
        except (SyntaxError, ValueError) as err:
            report("failed", f"syntax_error: {type(err).__name__}: {err}")
        scope = {"__name__": "solution", "__builtins__": __builtins__}
        exec(code, scope)
        exec(compile(item["test"], "tests.py", "exec"), scope)
        if item.get("entry_point") and callable(scope.get("check")):
            scope["check"](scope[item["entry_point"]])
        report("passed")
    except BaseException as err:
        report(*_fault(err))


def _verdict(data, status, timed_out):
    if timed_out:
        return "timeout", f"wall clock over {_TIMEOUT_TEXT} s"
    line = data.split(b"\n")[0].decode("utf-8", "replace")
    word, _, reason = line.partition(" ")
    if word in _KNOWN:
        return word, reason
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        reasons = {"SIGXCPU": "cpu_limit", "SIGXFSZ": "resource_limit: file size",
                   "SIGKILL": "killed by SIGKILL (out of memory?)"}
        return "crashed", reasons.get(name, f"signal {name}")
    return "crashed", f"exited with code {os.waitstatus_to_exitcode(status)} without a verdict"


for _index, _item in enumerate(_ITEMS):
    _read, _write = os.pipe()
    _start = time.monotonic()
    _pid = os.fork()
    if _pid == 0:
        os.close(_read)
        _child(_item, _write)
    os.close(_write)
    _data, _timed_out = b"", False
    while b"\n" not in _data and len(_data) < 4096:
        _left = _start + _TIMEOUT - time.monotonic()
        if _left <= 0:
            _timed_out = True
            break
        if select.select([_read], [], [], _left)[0]:
            _chunk = os.read(_read, 4096)
            if not _chunk:
                break
            _data += _chunk
    try:
        os.killpg(_pid, signal.SIGKILL)
    except OSError:
        pass
    _, _status = os.waitpid(_pid, 0)
    os.close(_read)
    _word, _reason = _verdict(_data, _status, _timed_out)
    _reason = " ".join(_reason.split())[:300]
    _wall = time.monotonic() - _start
    os.write(3, f"{_NONCE} {_index} {_wall:.4f} {_word} {_reason}\n".encode("utf-8", "replace"))
os.write(3, f"{_NONCE} done\n".encode())
""".replace("#FAULT_SOURCE#", FAULT_SOURCE)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-run limits. ``cpu_s`` is RLIMIT_CPU, ``ceil(timeout_s) + 1`` when None."""

    timeout_s: float = 10.0  # wall clock, per run (per stdio case)
    memory_mb: int = 1024  # RLIMIT_AS
    file_size_mb: int = 16  # RLIMIT_FSIZE
    max_processes: int = 64  # RLIMIT_NPROC (threads count too)
    max_open_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20  # stdout and stderr each: kept up to this, the rest counted
    tmpfs_mb: int = 64  # size of /tmp and /dev/shm (namespace modes)
    cpu_s: int | None = None

    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s) + 1


@dataclasses.dataclass(frozen=True)
class Isolation:
    """How runs are confined: ``name`` (the results' ``sandbox``), the command prefix,
    whether the launcher mounts its own filesystem, whether it drops to a run's uid, and
    the interpreter the programs run with."""

    name: str
    prefix: tuple[str, ...]
    mounts: bool
    drop_uid: bool
    python: str


def extract_code(response: str) -> str:
    """The program in a response: the last ```` ```python ```` (or ``py``, ``python3``)
    fenced block; else the last fenced block without a language; else the whole text."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(response)]
    for wanted in (("python", "py", "python3"), ("",)):
        bodies = [body for lang, body in blocks if lang in wanted]
        if bodies:
            return bodies[-1]
    return response


def same_output(actual: str, expected: str) -> bool:
    """Stdout equality as in LiveCodeBench: the same lines once trailing white space is
    dropped from each line and trailing empty lines are dropped."""
    def lines(text: str) -> list[str]:
        rows = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        while rows and not rows[-1]:
            rows.pop()
        return rows
    return lines(actual) == lines(expected)


def record_fault(record: Any) -> str | None:
    """Why a record cannot be graded (None if it can): not an object, no string
    ``response``, or neither a string ``test`` nor a list of ``stdio`` cases with string
    ``input`` and ``output``."""
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    if isinstance(record.get("batch"), list):  # grade_programs_batched's run of many items
        return None
    if not isinstance(record.get("response"), str):
        return "'response' missing or not a string"
    if isinstance(record.get("test"), str):
        entry = record.get("entry_point")
        return None if entry is None or isinstance(entry, str) else \
            "'entry_point' is not a string"
    cases = record.get("stdio")
    if isinstance(cases, list) and cases and all(
            isinstance(case, dict) and isinstance(case.get("input"), str)
            and isinstance(case.get("output"), str) for case in cases):
        return None
    return "needs a string 'test' or a non-empty 'stdio' list of {input, output} strings"


def grader_uids() -> range:
    """The unprivileged uids this grader process gives its runs (as root): a block of
    256 that depends on its pid, so two graders on one machine never share a uid."""
    first = UID_BASE + (os.getpid() << 8)
    return range(first, first + 256)


_next_uid = 0


def _pick_uid(busy: set[int]) -> int:
    """A uid of :func:`grader_uids` that no running run holds and that owns no task
    (not even a zombie of an earlier run that init has yet to reap: RLIMIT_NPROC counts
    it). Rotates through the block, so consecutive runs get different uids."""
    global _next_uid
    uids = grader_uids()
    for step in range(len(uids)):
        uid = uids[(_next_uid + step) % len(uids)]
        if uid not in busy and not _owns_processes(uid):
            _next_uid = (_next_uid + step + 1) % len(uids)
            return uid
    raise RuntimeError(f"every uid of {uids} still owns processes")


def _owns_processes(uid: int) -> bool:
    """Whether ``uid`` owns a process now, zombies included (``/proc/<pid>`` belongs to
    the process's uid; one ``stat`` per process, no file read)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    return True
    return False


def _user_tasks(uid: int) -> int:
    """Tasks (threads and zombies included) that ``uid`` owns now: what RLIMIT_NPROC
    counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                status = Path(entry.path, "status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                if int(fields["Uid"].split()[0]) == uid:
                    count += int(fields["Threads"])
    return count


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``: a forked child takes the uid and calls
    ``kill(-1, SIGKILL)``, which the kernel applies to all of them at once."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only makes system calls
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


@dataclasses.dataclass
class _Run:
    """One launched process tree: an item's case, its pipes, buffers and deadline."""

    item: int
    case: int
    slot: int
    uid: int | None  # the run's own uid (as root), else None
    proc: subprocess.Popen
    workdir: str
    nonce: str
    deadline: float
    started: float
    fds: dict[str, int]
    kept: dict[str, bytearray]
    sizes: dict[str, int]
    exited: bool = False


def _cases(record: dict[str, Any]) -> list[dict[str, str] | None]:
    """An item's runs: one per stdio case, or a single run for assert tests."""
    return list(record["stdio"]) if "test" not in record and "batch" not in record \
        else [None]


def _start(run_args: dict[str, Any], iso: Isolation, limits: Limits, root: str,
           slot: int, sel: selectors.BaseSelector, busy: set[int]) -> _Run:
    """Write the run's job and launch it (non-blocking)."""
    record, case = run_args["record"], run_args["case"]
    workdir = tempfile.mkdtemp(prefix="run-", dir=root)
    uid = _pick_uid(busy) if iso.drop_uid else None
    nonce = secrets.token_hex(16)
    mode = "stdio" if case is not None else "assert"
    files = {"harness.py": HARNESS, "solution.py": run_args["code"],
             "tests.py": record.get("test", "") if case is None else "",
             "nonce": nonce, "stdin.txt": case["input"] if case is not None else ""}
    argv = [iso.python, "-I", "harness.py", mode, record.get("entry_point") or ""]
    cpu_s, timeout_s = limits.cpu_seconds(), limits.timeout_s
    if "batch" in record:  # many items, one forked child each (BATCH_HARNESS)
        files = {"harness.py": BATCH_HARNESS, "batch.json": json.dumps(record["batch"]),
                 "nonce": nonce, "stdin.txt": ""}
        argv = [iso.python, "-I", "harness.py", str(limits.timeout_s), str(cpu_s)]
        timeout_s = limits.timeout_s * len(record["batch"]) + 10.0
        cpu_s = cpu_s * len(record["batch"]) + 10
    nproc = limits.max_processes
    if os.geteuid() != 0:  # RLIMIT_NPROC counts all the grader's own tasks too
        nproc += _user_tasks(os.getuid())
    home = "/tmp/sandbox" if iso.mounts else workdir
    verdict_r, verdict_w = os.pipe()
    job = {"mounts": iso.mounts, "workdir": workdir, "files": files if iso.mounts else {},
           "uid": uid, "tmpfs_mb": limits.tmpfs_mb, "cpu_s": cpu_s,
           "memory_mb": limits.memory_mb, "file_size_mb": limits.file_size_mb,
           "nproc": nproc, "max_open_files": limits.max_open_files,
           "stdin": "stdin.txt", "verdict_fd": verdict_w,
           "argv": argv,
           "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                   "HOME": home, "TMPDIR": "/tmp" if iso.mounts else workdir}}
    if not iso.mounts:
        for name, text in files.items():
            Path(workdir, name).write_text(text, encoding="utf-8")
    job_path = Path(root, Path(workdir).name + ".json")
    with open(os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
              encoding="utf-8") as handle:  # it holds the nonce: root only
        json.dump(job, handle)
    try:
        proc = subprocess.Popen(
            [*iso.prefix, iso.python, "-I", "-S", str(LAUNCHER), str(job_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(verdict_w,), start_new_session=True, env={"PATH": "/usr/bin:/bin"})
    finally:
        os.close(verdict_w)
    now = time.monotonic()
    fds = {"stdout": os.dup(proc.stdout.fileno()), "stderr": os.dup(proc.stderr.fileno()),
           "verdict": verdict_r}  # raw descriptors of our own: the loop closes them
    proc.stdout.close()
    proc.stderr.close()
    run = _Run(item=run_args["item"], case=run_args["case_index"], slot=slot, uid=uid,
               proc=proc, workdir=workdir, nonce=nonce, deadline=now + timeout_s,
               started=now, fds=fds, kept={k: bytearray() for k in fds},
               sizes=dict.fromkeys(fds, 0))
    for kind, fd in fds.items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, (run, kind))
    try:
        fds["exit"] = os.pidfd_open(proc.pid)
        sel.register(fds["exit"], selectors.EVENT_READ, (run, "exit"))
    except (AttributeError, OSError):  # no pidfds: the loop polls every 50 ms instead
        pass
    return run


def _read(run: _Run, kind: str, cap: int, sel: selectors.BaseSelector) -> bool:
    """Read what one pipe holds; keep up to ``cap`` bytes, count the rest. False at EOF
    or when nothing is left to read."""
    fd = run.fds[kind]
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return False
    if not chunk:
        sel.unregister(fd)
        run.fds[kind] = -1
        os.close(fd)
        return False
    run.sizes[kind] += len(chunk)
    room = cap - len(run.kept[kind])
    if room > 0:
        run.kept[kind] += chunk[:room]
    return True


def _finish(run: _Run, iso: Isolation, limits: Limits, sel: selectors.BaseSelector,
            timed_out: str | None) -> dict[str, Any]:
    """Kill what is left of a run, collect its output, remove its files; its result."""
    returncode = None
    if timed_out and iso.mounts:
        # SIGKILL the namespace's first process: the kernel kills the rest of its pid
        # namespace, and unshare, still alive, reaps it (no zombie left for init)
        with contextlib.suppress(OSError, ValueError, IndexError):
            children = Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children").read_text()
            os.kill(int(children.split()[0]), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            returncode = run.proc.wait(timeout=2)
    if returncode is None:
        if timed_out:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel
            returncode = run.proc.wait(timeout=10)
    for kind in ("stdout", "stderr", "verdict"):
        for _ in range(64):  # what the process wrote before it ended (bounded)
            if run.fds[kind] < 0 or not _read(run, kind, limits.output_bytes, sel):
                break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signal.SIGKILL)  # children left in the group
    if run.uid is not None and not iso.mounts:
        _kill_uid(run.uid)  # children that left the group (a pid namespace needs no help)
    for fd in run.fds.values():
        if fd >= 0:
            sel.unregister(fd)
            os.close(fd)
    shutil.rmtree(run.workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.unlink(run.workdir + ".json")
    stderr = run.kept["stderr"].decode("utf-8", "replace")
    result = {"exit_code": returncode, "signal": None,
              "wall_s": round(time.monotonic() - run.started, 4),
              "stdout_bytes": run.sizes["stdout"], "stderr_bytes": run.sizes["stderr"],
              "output_truncated": max(run.sizes["stdout"], run.sizes["stderr"])
              > limits.output_bytes, "stderr": stderr[-STDERR_KEPT:],
              "stdout": run.kept["stdout"].decode("utf-8", "replace"),
              "verdicts": run.kept["verdict"].decode("utf-8", "replace")}
    if returncode is not None and returncode < 0:
        result["signal"] = _signal_name(-returncode)
    elif iso.mounts and returncode is not None and 128 < returncode < 128 + signal.NSIG:
        result["signal"] = _signal_name(returncode - 128)  # the launcher's 128 + N
    elif returncode == 1 and _UNSHARE_SIGKILLED in stderr or timed_out:
        result["signal"] = "SIGKILL"  # unshare cannot re-raise a SIGKILL: it exits with 1
    result["status"], result["reason"] = _status(run, returncode, result, timed_out)
    return result


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _status(run: _Run, returncode: int | None, result: dict[str, Any],
            timed_out: str | None) -> tuple[str, str]:
    """(status, reason) of a finished run, before stdio outputs are compared."""
    if timed_out:
        return "timeout", timed_out
    for line in run.kept["verdict"].decode("utf-8", "replace").splitlines():
        nonce, _, rest = line.partition(" ")
        if nonce == run.nonce:
            status, _, reason = rest.partition(" ")
            return status, reason
    stderr = result["stderr"]
    if returncode == LAUNCH_FAILED and "sandbox: " in stderr or \
            stderr.startswith(("unshare: ", "setpriv: ")) and not result["signal"]:
        return "sandbox_error", stderr.strip().splitlines()[-1][:300]
    if returncode is None:
        return "sandbox_error", "the process did not die within 10 s of SIGKILL"
    if result["signal"]:
        reason = {"SIGXCPU": "cpu_limit", "SIGXFSZ": "resource_limit: file size",
                  "SIGKILL": "killed by SIGKILL (out of memory?)"}
        return "crashed", reason.get(result["signal"], f"signal {result['signal']}")
    return "crashed", f"exited with code {returncode} without a verdict"


def _grade(records: list[dict[str, Any]], iso: Isolation, limits: Limits, workers: int,
           total_timeout_s: float | None) -> list[dict[str, Any]]:
    """The event loop: at most ``workers`` runs at a time, each killed at its deadline."""
    start = time.monotonic()
    global_deadline = start + total_timeout_s if total_timeout_s else math.inf
    rows: list[dict[str, Any]] = []
    queue: deque[dict[str, Any]] = deque()
    for index, record in enumerate(records):
        fault = record_fault(record)
        row = dict(record) if isinstance(record, dict) else {"record": record}
        row.update(code=None, status="sandbox_error" if fault else None,
                   reason=f"bad record: {fault}" if fault else None, sandbox=iso.name,
                   exit_code=None, signal=None, wall_s=0.0, cases_passed=0,
                   cases_total=0, stdout_bytes=0, output_truncated=False, stderr="")
        rows.append(row)
        if fault is None:
            row["code"] = None if "batch" in record else extract_code(record["response"])
            row["cases_total"] = len(_cases(record))
            queue.append({"item": index, "record": record, "code": row["code"],
                          "case_index": 0, "case": _cases(record)[0]})
    free = list(range(min(workers, len(queue))))
    running: list[_Run] = []
    sel = selectors.DefaultSelector()
    root = tempfile.mkdtemp(prefix="effopd-sandbox-")
    os.chmod(root, 0o711)  # run uids reach their working directories (rlimits mode)

    def settle(run: _Run, timed_out: str | None) -> None:
        """Record a finished run; queue the item's next stdio case if this one passed."""
        running.remove(run)
        free.append(run.slot)
        result = _finish(run, iso, limits, sel, timed_out)
        row, record = rows[run.item], records[run.item]
        case = _cases(record)[run.case]
        if "batch" in record:  # the run's status: did the harness finish every item
            done = f"{run.nonce} done" in result["verdicts"].splitlines()
            if done:
                result.update(status="passed", reason="")
            elif result["status"] not in STATUSES:  # _status read an item's line
                result.update(status="crashed", reason="the batch ended before its last item")
            result["verdicts"] = [line.split(" ", 4)[1:] for line in
                                  result["verdicts"].splitlines()
                                  if line.startswith(run.nonce + " ")
                                  and len(line.split(" ", 4)) >= 4]
        if result["status"] == "ran":
            if result["output_truncated"]:
                result.update(status="failed", reason="output_limit")
            elif same_output(result["stdout"], case["output"]):
                result.update(status="passed", reason="")
            else:
                result.update(status="failed", reason=f"wrong_output on case {run.case}")
        row.update({k: v for k, v in result.items() if k not in ("stdout", "wall_s")
                    and (k != "verdicts" or "batch" in record)},
                   wall_s=round(row["wall_s"] + result["wall_s"], 4))
        if result["status"] == "passed":
            row["cases_passed"] += 1
            if run.case + 1 < len(_cases(record)):
                row["status"] = None
                queue.appendleft({"item": run.item, "record": record, "code": row["code"],
                                  "case_index": run.case + 1,
                                  "case": _cases(record)[run.case + 1]})

    try:
        while queue or running:
            now = time.monotonic()
            if now >= global_deadline:
                for run in list(running):
                    settle(run, f"global deadline of {total_timeout_s} s")
                for args in queue:
                    rows[args["item"]].update(status="sandbox_error", reason="not run: "
                                              f"global deadline of {total_timeout_s} s")
                break
            while queue and free:
                busy = {r.uid for r in running if r.uid is not None}
                args, slot = queue.popleft(), free.pop()
                try:
                    running.append(_start(args, iso, limits, root, slot, sel, busy))
                except OSError as err:  # the prefix or the interpreter cannot start
                    rows[args["item"]].update(status="sandbox_error",
                                              reason=f"launch failed: {err}")
                    free.append(slot)
            if not running:  # every launch failed: go on with the queue
                continue
            wake = min(min(r.deadline for r in running), global_deadline)
            polling = any("exit" not in r.fds for r in running)
            timeout = max(0.0, min(wake - time.monotonic(), 0.05 if polling else math.inf))
            for key, _ in sel.select(timeout):
                run, kind = key.data
                if kind == "exit":
                    run.exited = True
                elif run.fds.get(kind, -1) >= 0:
                    _read(run, kind, limits.output_bytes, sel)
            now = time.monotonic()
            for run in list(running):
                if run.exited or run.proc.poll() is not None:
                    settle(run, None)
                elif now >= run.deadline:
                    settle(run, f"wall clock over {limits.timeout_s} s")
    finally:
        for run in list(running):
            settle(run, "grading interrupted")
        sel.close()
        shutil.rmtree(root, ignore_errors=True)
    return rows


_DETECTED: dict[tuple[str, str | None], Isolation] = {}
_PROBE = {"response": "def f():\n    return 2\n", "test": "assert f() == 2\n"}


def _candidates(isolation: str, python: str | None) -> list[Isolation]:
    """The isolations to probe, strongest first, each with each candidate interpreter."""
    pythons = [python] if python else list(dict.fromkeys(
        p for p in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3",
                    shutil.which("python3")) if p and os.path.exists(p)))
    root = os.geteuid() == 0
    deathsig = ("setpriv", "--pdeathsig", "KILL") if shutil.which("setpriv") else ()
    options = []
    if isolation in ("auto", "namespaces") and shutil.which("unshare"):
        user = () if root else ("--user", "--map-root-user")
        options += [Isolation("namespaces+uid" if root else "userns",
                              (*deathsig, "unshare", *user, *_NAMESPACES), True, root, p)
                    for p in pythons]
    if isolation in ("auto", "rlimits"):
        options += [Isolation("rlimits+uid" if root else "rlimits", deathsig, False, root, p)
                    for p in pythons]
    return options


def detect_isolation(isolation: str = "auto", python: str | None = None) -> Isolation:
    """The strongest isolation that grades a probe program right here, cached per process.

    ``isolation``: ``auto`` (namespaces, else rlimits), ``namespaces`` or ``rlimits``.
    ``python``: the programs' interpreter; by default the first of this interpreter,
    ``/usr/bin/python3``, ... that a run's uid can run (a venv under ``/root`` cannot).
    Raises RuntimeError when nothing works, with each attempt's reason.
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    key = (isolation, python)
    if key not in _DETECTED:
        tried = []
        for option in _candidates(isolation, python):
            row = _grade([_PROBE], option, Limits(timeout_s=20), 1, None)[0]
            if row["status"] == "passed":
                _DETECTED[key] = option
                break
            tried.append(f"{option.name} with {option.python}: {row['status']} "
                         f"({row['reason']}; {row['stderr'][-200:]!r})")
        else:
            raise RuntimeError("no sandbox works here: " + "; ".join(tried))
    return _DETECTED[key]


def grade_programs(records: list[dict[str, Any]], limits: Limits | None = None,
                   workers: int = 2, isolation: str = "auto", python: str | None = None,
                   total_timeout_s: float | None = None) -> list[dict[str, Any]]:
    """Run each record's program against its tests in the sandbox, ``workers`` at a time.

    Returns copies of the records, in order, with ``code`` (the extracted program),
    ``status`` (one of :data:`STATUSES`), ``reason``, ``sandbox`` (the isolation used),
    ``exit_code``, ``signal``, ``wall_s`` (summed over stdio cases), ``cases_passed``,
    ``cases_total``, ``stdout_bytes``, ``stderr_bytes``, ``output_truncated`` and
    ``stderr`` (its last :data:`STDERR_KEPT` characters) added. ``total_timeout_s``
    bounds the whole call (None: no bound beyond each run's deadline).
    """
    limits = limits or Limits()
    if not 1 <= workers <= MAX_WORKERS or limits.timeout_s <= 0:
        raise ValueError(f"need 1 <= workers <= {MAX_WORKERS} and timeout_s > 0, "
                         f"got {workers}, {limits.timeout_s}")
    return _grade(records, detect_isolation(isolation, python), limits, workers,
                  total_timeout_s)


def grade_programs_batched(records: list[dict[str, Any]], limits: Limits | None = None,
                           workers: int = 2, batch_size: int = 64, isolation: str = "auto",
                           python: str | None = None,
                           total_timeout_s: float | None = None) -> list[dict[str, Any]]:
    """:func:`grade_programs` for many short assert-mode items: the same rows (with
    ``batched`` added), graded ``batch_size`` items to a sandbox run (module docstring,
    "Batches"), each distinct (program, tests, entry point) once.

    Per item, the limits are ``limits``' (wall clock, CPU seconds, memory, processes);
    stdout and stderr are not kept (``stdout_bytes`` 0, ``stderr`` empty). Records with
    stdio cases or a fault, and items whose batch ended before their verdict, are graded
    one run each by :func:`grade_programs`. ``total_timeout_s`` bounds each of the two
    passes.
    """
    limits = limits or Limits()
    if not 1 <= workers <= MAX_WORKERS or limits.timeout_s <= 0 or batch_size < 1:
        raise ValueError(f"need 1 <= workers <= {MAX_WORKERS}, timeout_s > 0 and "
                         f"batch_size >= 1, got {workers}, {limits.timeout_s}, {batch_size}")
    iso = detect_isolation(isolation, python)
    keys: dict[tuple[str, str, str], int] = {}  # distinct item -> its index in `unique`
    unique: list[dict[str, str]] = []
    item_of: dict[int, int] = {}  # record index -> distinct item
    single: list[int] = []  # records graded one run each
    for index, record in enumerate(records):
        if record_fault(record) is not None or not isinstance(record.get("test"), str):
            single.append(index)
            continue
        key = (extract_code(record["response"]), record["test"],
               record.get("entry_point") or "")
        if key not in keys:
            keys[key] = len(unique)
            unique.append({"code": key[0], "test": key[1], "entry_point": key[2]})
        item_of[index] = keys[key]
    batches = [list(range(start, min(start + batch_size, len(unique))))
               for start in range(0, len(unique), batch_size)]
    runs = _grade([{"batch": [unique[i] for i in members]} for members in batches], iso,
                  limits, workers, total_timeout_s) if batches else []
    verdicts: dict[int, tuple[str, str, float]] = {}
    for members, run in zip(batches, runs, strict=True):
        for fields in run.get("verdicts") or []:
            index, wall, status = int(fields[0]), float(fields[1]), fields[2]
            if 0 <= index < len(members) and status in STATUSES:
                verdicts[members[index]] = (status, fields[3] if len(fields) > 3 else "",
                                            wall)
    single += [i for i, item in item_of.items() if item not in verdicts]
    alone = dict(zip(sorted(single), grade_programs(
        [records[i] for i in sorted(single)], limits, workers, isolation, python,
        total_timeout_s) if single else [], strict=True))
    rows = []
    for index, record in enumerate(records):
        if index in alone:
            rows.append({**alone[index], "batched": False})
            continue
        status, reason, wall = verdicts[item_of[index]]
        rows.append({**record, "code": unique[item_of[index]]["code"], "status": status,
                     "reason": reason, "sandbox": iso.name, "exit_code": None,
                     "signal": None, "wall_s": round(wall, 4),
                     "cases_passed": int(status == "passed"), "cases_total": 1,
                     "stdout_bytes": 0, "output_truncated": False, "stderr": "",
                     "batched": True})
    return rows


def summarize_code_grades(rows: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    """avg@n, pass@k and ``n_<status>`` counts of graded rows (each with ``problem_id``;
    every problem with the same number of samples): correct means ``passed``. The
    estimators are :func:`effopd.metrics.summarize_grades`'s."""
    frame = pd.DataFrame({"problem_id": [row["problem_id"] for row in rows],
                          "status": [row["status"] for row in rows]})
    frame["correct"] = frame["status"] == "passed"
    return summarize_grades(frame, ks, statuses=STATUSES)


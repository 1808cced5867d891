"""Sandboxed execution grading of generated programs (SPEC section 5, "Code").

An item is a model's response and its hidden tests. The program is the response's last
```` ```python ```` fenced block (else its last unlabelled fenced block, else the whole
text: :func:`extract_code`). Two kinds of tests, as in the code benchmarks:

- **assert** (HumanEval+ / MBPP+, the code task, LiveCodeBench's functional problems):
  ``test`` is Python source: asserts at module level (MBPP, the code task) or a
  ``check(candidate)`` function called with the program's ``entry_point`` (HumanEval,
  evalplus), run by the judge with the program's names bound to proxies ("Judgement").
- **stdio** (LiveCodeBench): ``stdio`` is a list of ``{"input", "output"}`` cases; the
  program runs once per case with ``input`` on its stdin, and passes the case when its
  stdout equals ``output`` line by line after trailing white space is dropped
  (:func:`same_output`). The item stops at its first case that does not pass.

**A run** is one process tree in its own session (process group), launched by
``effopd/sandbox_launch.py``, with: a hard wall-clock deadline (the grader SIGKILLs
the group at ``timeout_s``), limits on CPU seconds, address space, file size,
processes and open files, an empty working directory, an environment reduced to
``PATH``, ``LANG``, ``HOME`` and ``TMPDIR``, and stdout and stderr read with a byte cap.
A stdio run's process is :data:`HARNESS`, which runs the program and signs "ran" with a
fresh nonce on fd 3; the grader compares the output with the expected one itself (the
sandbox never sees it). An assert run's process is :data:`SERVER`, and its verdicts come
from a judge outside the sandbox:

**Judgement** (assert items; the graded program is an adversary, SPEC section 5).
Per run, the grader starts :data:`JUDGE`, a process of its own outside the sandbox,
with four pipes: control (judge -> server), request (judge -> item), reply (item and
server -> judge) and verdict (judge -> grader). The tests go to the judge alone, on an
unnamed file; the sandbox gets the programs. Per item, in order:

1. the judge sends ``start`` with a fresh random token; the server forks the item's
   child (own process group, own ``RLIMIT_CPU``, output to ``/dev/null`` in batches),
   which compiles and runs the program and replies ``ready`` (or its fault: a syntax
   error, an exception, a limit);
2. the judge compiles the test (its own ``compile``, ``exec`` and builtins) and binds,
   in a fresh namespace, the names the test reads without defining them that are no
   built-ins (:mod:`symtable`), and the ``entry_point``: plain data values as they are,
   the program's functions and classes as proxies (:class:`_Remote` in the judge; a
   module name: the judge's own import of it). A test's own names (``check``,
   ``_EFFOPD_INPUTS``...) and the built-ins are never the program's;
3. the judge runs the test; a proxy's call sends its arguments to the child as plain
   data and rebuilds the reply: a value, an exception (as the built-in class of that
   name, else a ``ProgramError`` subclass of that name), or, only for a call of one of
   the program's classes, a handle on the instance, whose methods are proxies again.
   Anything else ends the item: a value that is not plain data (``not_plain_data``), a
   malformed or oversized reply (``protocol: ...``). A handle cannot be compared,
   hashed, tested for truth or iterated (``not_plain_data``);
4. the verdict is the test's outcome in the judge: ``passed`` when it returns within
   the item's wall clock (the judge's own ``SIGALRM``), ``timeout`` after it, else the
   exception's (:data:`FAULT_SOURCE`), or the child's end as the server reports it;
5. the judge sends ``end``; the server SIGKILLs the child's group, then (confined runs:
   a pid namespace or a uid of the run's own) every other process of the run's uid,
   empties ``/tmp`` and ``/dev/shm`` (namespace runs), and reports the child's end.

**Plain data**: None, bool, int, float, complex, str, bytes, and lists, tuples, dicts,
sets and frozensets of them, at most 100 deep, of exactly these types (no subclasses),
as one JSON line of at most :data:`MAX_REPLY_BYTES` (:data:`PLAIN_SOURCE`). The judge
decodes with ``json.loads`` and rebuilds every container itself: what it compares is
its own built-in objects, so no value can compare equal to anything. Floats compare as
the benchmark's test says (evalplus's tolerance lives in its ``check``).

**What the program can reach**: its own process (the server's code that forked it, its
frames, functions, builtins, the request pipe's read end and the reply pipe's write
end), its forks, the server's process by signal (not by ptrace or ``/proc/<pid>/mem``:
the server is not dumpable), the run's working directory and tmpfs, stdout and stderr.
It can write anything on the reply pipe, and read the arguments of the calls made to
it. **What it cannot reach**: the judge (another pid namespace and uid, no descriptor
in common but the two data pipes), the tests and the expected values (never in the
sandbox), the verdict pipe (only the judge holds it), the grader. So nothing it does
decides a verdict: a line on the reply pipe counts only with the item's token and the
number of the pending request, and then only as plain data that the judge compares
itself; killing or stopping the server ends the batch (the items not judged are graded
again one run each; a server that does not report an item's end within 5 s stops the
batch too). What an item can leave for a later item of the same batch is gone before
that item starts (processes, ``/tmp``, ``/dev/shm``); what is left are SysV IPC objects
and the uid's kernel keyring, which a later item could read only by colluding, and no
item can change its own verdict with them. A test that reads a name it does not define
trusts the program's definition of it (as it did in the program's own namespace): the
evalplus ``check`` reads only ``candidate``. In the ``rlimits`` fallback without a uid
(a non-root grader without user namespaces) the program shares the grader's uid: it can
signal or ptrace the judge and the grader where the kernel allows, and no verdict is
guaranteed there; ``userns`` runs the program as root of its own user namespace, where
it could ptrace its server (not the judge), so only the batch's later items are at risk.

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

- ``passed``: every test passed (the judge's verdict; for stdio, every case's output).
- ``failed``: the program ran and is wrong: a failed assertion, a wrong output, an
  uncaught exception, ``sys.exit`` before the tests, ``syntax_error`` (it does not
  compile; its reason starts with ``syntax_error`` so it can be told apart), a value
  that is not plain data (``not_plain_data``) or a reply that breaks the protocol
  (``protocol``).
- ``timeout``: killed at the wall-clock deadline (or at the batch's global deadline).
- ``crashed``: ended abnormally: ``memory_limit`` (MemoryError), ``resource_limit``
  (fork, file size or open files refused: EAGAIN, EFBIG, EMFILE...), ``cpu_limit``
  (SIGXCPU), killed by another signal, or exited without a verdict (``os._exit``). In
  the namespace modes the launcher reports a signal N as exit code 128 + N, so a
  program that exits with such a code itself reads as killed by N (crashed either way).
  For assert items, ``exit_code`` and ``signal`` are the item's child's (both None when
  the judge ended it after its verdict, ``SIGKILL`` at its deadline).
- ``sandbox_error``: the grader's fault, not the program's: the launcher failed, a
  malformed record, or the batch's global deadline passed before the item started.

Grading is parallel and bounded: at most ``workers`` runs at a time, one event loop
(no threads) that waits on the runs' pipes and pidfds until the next deadline; every
run ends by its deadline, and ``total_timeout_s`` bounds the whole batch.

**Batches** (:func:`grade_programs_batched`, for many short assert-mode items such as
RL rollouts): identical (program, tests) items are graded once; the rest go
``batch_size`` to a run: the same server and judge as one run each (which is a batch of
one whose child keeps the run's stdout and stderr). Items stay separate processes (no
state passes from one to the next, "Judgement" step 5); an item whose verdict is missing
because its batch ended early (a program that kills its server) is graded again on its
own. A run costs about 150 ms (three interpreters and the namespaces), a batched item a
fork and a few pipe round trips: the difference between a reward that costs more than
the training step and one that does not (``benchmarks/code_grading_speed.py``).

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
MAX_REPLY_BYTES = 16 << 20  # one message of the program's side to the judge
_UNSHARE_SIGKILLED = "unshare: sigprocmask unblock failed"
_NAMESPACES = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc",
               "--ipc", "--uts"]
_FENCE = re.compile(r"```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)

# Both sandbox harnesses and the judge import nothing of ours; the verdict of an exception
# (and which errno counts as a resource limit) is this one piece of source, pasted into
# each where it says #FAULT_SOURCE#.
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

# Plain data on the wire between the judge and the program's side (module docstring,
# "Plain data"): JSON for None, bool, str, float and 64-bit ints, a one-key object for the
# rest. _decode rebuilds exact built-in types from what json.loads gave, or raises
# ValueError; the program's side encodes with _encode, which refuses any other type
# (subclasses included). Pasted into the server and the judge at #PLAIN_SOURCE#.
PLAIN_SOURCE = r'''
_PLAIN_DEPTH = 100
_INT64 = 1 << 63
_SEQUENCES = {list: None, tuple: "t", set: "s", frozenset: "f"}
_BUILD = {"t": tuple, "s": set, "f": frozenset}


def _encode(value, depth=0):
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is int:
        return value if -_INT64 <= value < _INT64 else {"i": format(value, "x")}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    if depth >= _PLAIN_DEPTH:
        raise ValueError(f"nested deeper than {_PLAIN_DEPTH}")
    if kind in _SEQUENCES:
        items = [_encode(item, depth + 1) for item in value]
        return items if kind is list else {_SEQUENCES[kind]: items}
    if kind is dict:
        return {"d": [[_encode(k, depth + 1), _encode(v, depth + 1)]
                      for k, v in value.items()]}
    raise TypeError(f"not plain data: {kind.__name__}")


def _decode(data, depth=0):
    kind = type(data)
    if data is None or kind in (bool, str, float, int):
        return data
    if depth >= _PLAIN_DEPTH:
        raise ValueError(f"nested deeper than {_PLAIN_DEPTH}")
    if kind is list:
        return [_decode(item, depth + 1) for item in data]
    if kind is not dict or len(data) != 1:
        raise ValueError(f"not plain data: {kind.__name__}")
    (tag, body), = data.items()
    if tag == "i" and type(body) is str:
        return int(body, 16)
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2 and \
            all(type(part) is float for part in body):
        return complex(body[0], body[1])
    if type(body) is not list:
        raise ValueError(f"not plain data: tag {tag!r}")
    items = [_decode(item, depth + 1) for item in body]
    if tag in _BUILD:
        return _BUILD[tag](items)
    if tag == "d" and all(type(pair) is list and len(pair) == 2 for pair in items):
        return dict(items)
    raise ValueError(f"not plain data: tag {tag!r}")
'''


# The stdio harness runs inside the sandbox as the program's process: it compiles and runs
# the program (its stdin is the case's input) and writes "<nonce> ran" (or "<nonce>
# <status> <reason>") on fd 3; the grader compares the stdout with the expected output
# itself. Forked children of the program never write a verdict.
HARNESS = r'''
import errno, os, sys
_MAIN = os.getpid()
with open("nonce") as _f:
    _NONCE = _f.read().strip()
os.unlink("nonce")
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
    try:
        exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as err:
        if err.code not in (None, 0):
            raise
    _report("ran")
except BaseException as err:
    if os.getpid() != _MAIN:
        os._exit(1)
    if not isinstance(err, (SystemExit, MemoryError)):
        import traceback
        traceback.print_exc()
    _report(*_fault(err))
'''.replace("#FAULT_SOURCE#", FAULT_SOURCE)


# The server: the sandbox's process for assert items (module docstring, "Judgement").
# Fds: 3 the request pipe (judge -> item), 4 the reply pipe (item and server -> judge),
# 5 the control pipe (judge -> server). Per "start" it forks the item's child; the child
# runs the program and answers the judge's requests until the server kills its process
# group at "end" (or it dies); then the server kills what is left (confined runs: every
# process of the run's uid but itself), empties /tmp and /dev/shm (mounts) and reports
# the child's end. Argv: single|batch, the item's CPU seconds, confined|open, wipe|keep.
SERVER = r'''
import ctypes, errno, json, os, resource, select, signal, sys, time
_REQ, _REP, _CTL = 3, 4, 5
_SINGLE, _CPU = sys.argv[1] == "single", int(sys.argv[2])
_CONFINED, _WIPE = sys.argv[3] == "confined", sys.argv[4] == "wipe"
with open("programs.json", encoding="utf-8") as _f:
    _PROGRAMS = json.load(_f)
os.unlink("programs.json")
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace, no /proc/<pid>/mem
#FAULT_SOURCE#
#PLAIN_SOURCE#


def _write(fd, message):
    data = ("\n" + json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _lines(fd, buffer):
    """The next message (a dict) on fd, reading as needed; None at EOF."""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[:end + 1]
            try:
                message = json.loads(line) if line.strip() else None
            except (ValueError, RecursionError):
                message = None
            if type(message) is dict:
                return message
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None
        buffer += chunk


def _describe(value, refs):
    if isinstance(value, type(os)):
        return {"module": 1}
    try:
        return {"value": _encode(value)}
    except (TypeError, ValueError, RecursionError):
        refs.append(value)
        return {"ref": len(refs) - 1}


def _answer(request, refs):
    try:
        target = refs[request["ref"]]
        if request["op"] == "get":
            found = {}
            for name in request["names"]:
                if target is refs[0]:
                    if name in target:
                        found[name] = _describe(target[name], refs)
                    continue
                try:
                    value = getattr(target, name)
                except Exception:
                    continue
                found[name] = _describe(value, refs)
            return {"found": found}
        args, kwargs = _decode(request["args"]), _decode(request["kwargs"])
    except Exception as err:
        return {"bad_request": repr(err)[:200]}
    try:
        result = target(*args, **kwargs)
    except BaseException as err:
        code = err.errno if isinstance(err, OSError) and type(err.errno) is int else None
        try:
            text = str(err)[:300]
        except BaseException:
            text = "(unprintable)"
        return {"raised": [type(err).__name__, text, code]}
    try:
        return {"value": _encode(result)}
    except (TypeError, ValueError, RecursionError):
        if isinstance(target, type):  # an instance of the program's class: a handle
            refs.append(result)
            return {"ref": len(refs) - 1}
        return {"not_data": type(result).__name__[:100]}


def _child(code, token):
    me = os.getpid()
    os.setpgid(0, 0)
    os.close(_CTL)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0,) if _SINGLE else (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU, _CPU + 1))
    seq = 0

    def reply(message):
        if os.getpid() != me:  # a forked copy of the program never answers
            os._exit(1)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        _write(_REP, {"token": token, "seq": seq, **message})

    try:
        compiled = compile(code, "solution.py", "exec")
    except BaseException as err:
        reason = f"syntax_error: {type(err).__name__}: {err}" if \
            isinstance(err, (SyntaxError, ValueError)) else _fault(err)[1]
        reply({"fault": ["failed", reason]})
        os._exit(0)
    scope = {"__name__": "solution", "__builtins__": __builtins__}
    try:
        exec(compiled, scope)
    except BaseException as err:
        reply({"fault": list(_fault(err))})
        os._exit(0)
    refs = [scope]
    reply({"ready": 1})
    buffer = bytearray()
    while True:
        request = _lines(_REQ, buffer)
        if request is None:
            os._exit(0)
        if request.get("token") == token and type(request.get("seq")) is int:
            seq = request["seq"]
            reply(_answer(request, refs))


def _fork():
    for _ in range(300):  # the last item's processes may still count for RLIMIT_NPROC
        try:
            return os.fork()
        except BlockingIOError:
            time.sleep(0.01)
    return os.fork()


def _remove(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            for name in os.listdir(path):
                _remove(os.path.join(path, name))
            if path != os.getcwd():
                os.rmdir(path)
        else:
            os.unlink(path)
    except (OSError, RecursionError):
        pass


def _clean(pid):
    """Kill what is left of an item and remove its files: nothing passes to the next."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    if _CONFINED:
        try:
            os.kill(-1, signal.SIGKILL)  # every process of the run's uid but this one
        except OSError:
            pass
    if _WIPE:
        for top in ("/tmp", "/dev/shm"):
            try:
                names = os.listdir(top)
            except OSError:
                continue
            for name in names:
                _remove(os.path.join(top, name))


def _end_info(status):
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        return {"exit_code": None, "signal": name}
    return {"exit_code": os.waitstatus_to_exitcode(status), "signal": None}


def _serve(index, token, control):
    pid = _fork()
    if pid == 0:
        try:
            _child(_PROGRAMS[index], token)
        finally:
            os._exit(1)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    exited, requested = os.pidfd_open(pid), False
    while True:
        if b"\n" not in control and _CTL not in select.select([_CTL, exited], [], [])[0]:
            break  # the child ended by itself
        message = _lines(_CTL, control)
        if message is None or "quit" in message or message.get("end") == token:
            requested = True
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            break
    _, status = os.waitpid(pid, 0)
    os.close(exited)
    _clean(pid)
    _write(_REP, {"token": token, "exit": {"killed": 1} if requested else _end_info(status)})


_control = bytearray()
_write(_REP, {"hello": 1})
while True:
    _message = _lines(_CTL, _control)
    if _message is None or "quit" in _message:
        break
    if type(_message.get("start")) is int and 0 <= _message["start"] < len(_PROGRAMS):
        _serve(_message["start"], str(_message.get("token")), _control)
'''.replace("#FAULT_SOURCE#", FAULT_SOURCE).replace("#PLAIN_SOURCE#", PLAIN_SOURCE)


# The judge: a trusted process outside the sandbox (module docstring, "Judgement"). It
# holds the tests, runs them with the program's names bound to proxies whose calls go to
# the item's child as plain data, and writes one JSON verdict line per item on its fd.
# Argv: the control, request and reply pipes, the verdict pipe, the job's descriptor.
JUDGE = r'''
import builtins, errno, importlib, json, os, select, signal, symtable, sys, time, types
_CTL, _REQ, _REP, _OUT, _JOB_FD = (int(arg) for arg in sys.argv[1:6])
with os.fdopen(_JOB_FD, encoding="utf-8") as _f:
    _JOB = json.load(_f)
_TIMEOUT, _TIMEOUT_TEXT = _JOB["timeout_s"], _JOB["timeout_text"]
_MAX_REPLY, _GRACE = _JOB["max_reply_bytes"], 5.0
#FAULT_SOURCE#
#PLAIN_SOURCE#


class _Stop(BaseException):
    """The item is over and not passed, for ``reason`` (a BaseException: a test's
    ``except Exception`` cannot swallow it)."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Ended(BaseException):
    """The server reported the item's child dead (its exit code or signal)."""


class _Gone(BaseException):
    """The reply pipe closed, or the server stopped reading: the program's side is dead."""


class _Deadline(BaseException):
    """The item's wall clock ran out."""


class ProgramError(Exception):
    """An exception of the program's that is not a built-in one (its class, by name)."""


_STATE = {"armed": False, "expired": False, "seq": 0, "token": "", "skipping": False}
_BUFFER = bytearray()
_TESTS = {}


def _alarm(signum, frame):
    if _STATE["armed"]:
        _STATE["expired"] = True
        raise _Deadline()


signal.signal(signal.SIGALRM, _alarm)


def _write(fd, message):
    data = ("\n" + json.dumps(message) + "\n").encode()
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        raise _Gone() from None


def _receive(until=None):
    """The next message on the reply pipe: a dict, None for a line that is none, "late"
    when ``until`` passes first, {"oversize": 1} for a line over the cap."""
    while True:
        end = _BUFFER.find(b"\n")
        if end >= 0:
            line = bytes(_BUFFER[:end])
            del _BUFFER[:end + 1]
            if _STATE["skipping"]:
                _STATE["skipping"] = False
                continue
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):
                return None
            return message if type(message) is dict else None
        if len(_BUFFER) > _MAX_REPLY:
            _BUFFER.clear()
            skipped, _STATE["skipping"] = _STATE["skipping"], True
            if not skipped:
                return {"oversize": 1}
        if until is not None:
            left = until - time.monotonic()
            if left <= 0 or not select.select([_REP], [], [], left)[0]:
                return "late"
        chunk = os.read(_REP, 1 << 20)
        if not chunk:
            raise _Gone()
        _BUFFER.extend(chunk)


def _await(seq):
    """The current item's reply number ``seq``; what else comes is dropped."""
    while True:
        message = _receive()
        if message is None or message.get("token") != _STATE["token"]:
            if message and "oversize" in message:
                raise _Stop("failed", f"protocol: a reply over {_MAX_REPLY} bytes")
            continue
        if "exit" in message:
            raise _Ended(message["exit"])
        if message.get("seq") == seq:
            return message


def _request(message):
    if _STATE["expired"]:
        raise _Deadline()
    _STATE["seq"] += 1
    _write(_REQ, {"token": _STATE["token"], "seq": _STATE["seq"], **message})
    return _await(_STATE["seq"])


def _rebuilt(name, text, code):
    """The judge's own exception for one the program raised: the built-in class of that
    name (so a test's ``except ValueError`` works), else a ProgramError named after it."""
    cls = getattr(builtins, name, None) if name.isidentifier() else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(code, text) if issubclass(cls, OSError) and type(code) is int \
                else cls(text)
        except Exception:
            pass
    return type(name if name.isidentifier() else "ProgramError", (ProgramError,), {})(text)


def _result(reply, label):
    """A reply's value, rebuilt: plain data, a handle on an instance of the program's
    class, or the exception it raised; anything else ends the item."""
    if "value" in reply:
        try:
            return _decode(reply["value"])
        except (ValueError, TypeError, RecursionError) as err:
            raise _Stop("failed", f"protocol: {label} sent malformed data: {err}") from None
    if type(reply.get("ref")) is int:
        return _Remote(reply["ref"], label)
    if "not_data" in reply:
        raise _Stop("failed", f"not_plain_data: {label} returned a "
                    f"{str(reply['not_data'])[:60]}, not plain data")
    raised = reply.get("raised")
    if type(raised) is list and len(raised) == 3 and type(raised[0]) is str and \
            type(raised[1]) is str:
        raise _rebuilt(raised[0][:100], raised[1][:300], raised[2])
    raise _Stop("failed", f"protocol: {label}: unexpected reply {sorted(reply)[:4]}")


def _found(reply):
    found = reply.get("found")
    if type(found) is not dict or not all(type(entry) is dict for entry in found.values()):
        raise _Stop("failed", "protocol: a malformed name lookup")
    return found


class _Remote:
    """A name of the program's (a function, a class, an instance, a method): calling it
    sends plain data to the item's child and rebuilds what comes back. It cannot be
    compared, hashed, tested for truth or iterated: such a use ends the item."""

    __slots__ = ("_ref", "_label")

    def __init__(self, ref, label):
        self._ref, self._label = ref, label

    def __call__(self, *args, **kwargs):
        label = f"{self._label}()"
        try:
            payload = {"args": _encode(list(args)), "kwargs": _encode(dict(kwargs))}
        except (TypeError, ValueError, RecursionError) as err:
            raise TypeError(f"cannot send to the program's {self._label}: {err}") from None
        return _result(_request({"op": "call", "ref": self._ref, **payload}), label)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        found = _found(_request({"op": "get", "ref": self._ref, "names": [name]}))
        if name not in found or "module" in found[name]:
            raise AttributeError(f"the program's {self._label} has no attribute {name!r}")
        return _result(found[name], f"{self._label}.{name}")

    def __repr__(self):
        return f"<the program's {self._label}>"

    def _refuse(self, *args):
        raise _Stop("failed", f"not_plain_data: the program's {self._label} is not plain "
                    "data (compared, hashed, tested or iterated)")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __hash__ = __bool__ = _refuse
    __len__ = __iter__ = __contains__ = __index__ = __int__ = __float__ = _refuse


def _compiled(test):
    """The test's code and the names it reads without binding them (nor are they
    built-ins): those come from the program."""
    if test not in _TESTS:
        code = compile(test, "tests.py", "exec")
        top = symtable.symtable(test, "tests.py", "exec")
        own = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
        free, tables = set(), [top]
        while tables:
            table = tables.pop()
            free |= {s.get_name() for s in table.get_symbols()
                     if s.is_referenced() and s.is_global() and not s.is_local()}
            tables += table.get_children()
        _TESTS[test] = code, sorted(name for name in free - own
                                    if not name.startswith("__") and not hasattr(builtins, name))
    return _TESTS[test]


def _bind_names(free, entry):
    """The test's namespace: the program's values of its free names (a module name: the
    judge's own import of it), and the entry point's handle (None if absent)."""
    names = free + ([entry] if entry and entry not in free else [])
    found = _found(_request({"op": "get", "ref": 0, "names": names})) if names else {}
    scope = {"__name__": "tests", "__builtins__": builtins}
    for name in free:
        if name in found and "module" in found[name]:
            try:
                scope[name] = importlib.import_module(name)
            except ImportError:
                pass
        elif name in found:
            scope[name] = _result(found[name], name)
    candidate = found.get(entry)
    return scope, (None if candidate is None or "module" in candidate else
                   _result(candidate, entry))


def _ended_reason(info):
    signal_name = info.get("signal") if type(info) is dict else None
    if signal_name:
        return {"SIGXCPU": "cpu_limit", "SIGXFSZ": "resource_limit: file size",
                "SIGKILL": "killed by SIGKILL (out of memory?)"}.get(
            str(signal_name), f"signal {str(signal_name)[:20]}")
    code = info.get("exit_code") if type(info) is dict else None
    return f"exited with code {code if type(code) is int else '?'} without a verdict"


def _judge(item):
    """(status, reason, the child's end or None) of one item; None if the program's side
    died under it (the grader grades it again, alone)."""
    try:
        code, free = _compiled(item["test"])
    except Exception as err:
        return "sandbox_error", f"the test does not compile: {type(err).__name__}: {err}", None
    entry = item.get("entry_point") or ""
    _STATE.update(armed=True, expired=False, seq=0)
    signal.setitimer(signal.ITIMER_REAL, _TIMEOUT)
    try:
        try:
            ready = _await(0)
            if "fault" in ready:
                status, reason = (ready["fault"] + ["", ""])[:2]
                if status not in ("failed", "crashed") or type(reason) is not str:
                    raise _Stop("failed", "protocol: a malformed fault")
                raise _Stop(status, reason)
            if "ready" not in ready:
                raise _Stop("failed", "protocol: no ready message")
            scope, candidate = _bind_names(free, entry)
            exec(code, scope)
            check = scope.get("check")
            if entry and isinstance(check, types.FunctionType) and \
                    check.__code__.co_filename == "tests.py":
                if candidate is None:
                    raise NameError(f"name {entry!r} is not defined by the program")
                check(candidate)
            if _STATE["expired"]:
                raise _Deadline()
            result = "passed", "", None
        finally:
            _STATE["armed"] = False
    except _Deadline:
        result = "timeout", f"wall clock over {_TIMEOUT_TEXT} s", None
    except _Stop as stop:
        result = stop.status, stop.reason, None
    except _Ended as ended:
        info = ended.args[0] if ended.args else None
        result = "crashed", _ended_reason(info), info
    except _Gone:
        result = None
    except BaseException as err:
        result = (*_fault(err), None)
    signal.setitimer(signal.ITIMER_REAL, 0)
    return result


def _end(token):
    """Ask the server to end the item; its report of the child's end (None if late)."""
    _write(_CTL, {"end": token})
    until = time.monotonic() + _GRACE
    while True:
        message = _receive(until)
        if message == "late":
            return None
        if message and message.get("token") == token and "exit" in message:
            return message["exit"]


def _main():
    while True:  # the server's hello: the sandbox is up (the grader's deadline bounds this)
        message = _receive()
        if message and "hello" in message:
            break
    for index, item in enumerate(_JOB["items"]):
        _STATE["token"] = token = os.urandom(12).hex()
        start = time.monotonic()
        _write(_CTL, {"start": index, "token": token})
        verdict = _judge(item)
        if verdict is None:
            return
        status, reason, info = verdict
        wall = time.monotonic() - start
        gone = False
        if info is None:
            try:
                info = _end(token)
            except _Gone:
                pass
            gone = info is None  # the server is dead or stopped: the next items go alone
        info = info if type(info) is dict else {}
        code, signal_name = info.get("exit_code"), info.get("signal")
        if "killed" in info:  # ended by the judge: at its deadline, or after its verdict
            code, signal_name = None, "SIGKILL" if status == "timeout" else None
        _write(_OUT, {"index": index, "status": status,
                      "reason": " ".join(str(reason).split())[:300],
                      "wall_s": round(wall, 4),
                      "exit_code": code if type(code) is int else None,
                      "signal": str(signal_name)[:20] if signal_name else None})
        if gone:
            return
    _write(_CTL, {"quit": 1})
    _write(_OUT, {"done": 1})


try:
    _main()
except _Gone:
    pass
except BaseException as err:
    import traceback
    _write(_OUT, {"fatal": f"{type(err).__name__}: {err}"[:300]})
    traceback.print_exc()
'''.replace("#FAULT_SOURCE#", FAULT_SOURCE).replace("#PLAIN_SOURCE#", PLAIN_SOURCE)


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
    """One launched process tree (and, for assert items, its judge): an item's case, its
    pipes, buffers and deadline."""

    item: int
    case: int
    slot: int
    uid: int | None  # the run's own uid (as root), else None
    proc: subprocess.Popen
    workdir: str
    nonce: str  # the stdio harness's; empty for assert items
    deadline: float
    started: float
    fds: dict[str, int]
    kept: dict[str, bytearray]
    sizes: dict[str, int]
    judge: subprocess.Popen | None = None
    exited: bool = False
    judged: bool = False

    def done(self) -> bool:
        """Whether the run is over: its judge ended (assert), or its process (stdio)."""
        if self.judge is not None:
            return self.judged or self.judge.poll() is not None
        return self.exited or self.proc.poll() is not None


def _cases(record: dict[str, Any]) -> list[dict[str, str] | None]:
    """An item's runs: one per stdio case, or a single run for assert tests."""
    return list(record["stdio"]) if "test" not in record and "batch" not in record \
        else [None]


def _start_judge(iso: Isolation, items: list[dict[str, str]], limits: Limits,
                 pipes: tuple[int, int, int, int]) -> subprocess.Popen:
    """Launch the judge of a run's assert items (outside the sandbox) with its pipes:
    control, request, reply, verdict. Its job (the tests) goes on an unnamed file."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as job:
        json.dump({"items": [{"test": item["test"], "entry_point": item["entry_point"]}
                             for item in items],
                   "timeout_s": limits.timeout_s, "timeout_text": str(limits.timeout_s),
                   "max_reply_bytes": MAX_REPLY_BYTES}, job)
        job.flush()
        job.seek(0)
        return subprocess.Popen(
            [iso.python, "-I", "-S", "-c", JUDGE, *map(str, pipes), str(job.fileno())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(*pipes, job.fileno()), start_new_session=True,
            env={"PATH": "/usr/bin:/bin"})


def _start(run_args: dict[str, Any], iso: Isolation, limits: Limits, root: str,
           slot: int, sel: selectors.BaseSelector, busy: set[int]) -> _Run:
    """Write the run's job and launch it (non-blocking): a stdio case with the harness,
    or assert items with the server in the sandbox and the judge outside it."""
    record, case = run_args["record"], run_args["case"]
    workdir = tempfile.mkdtemp(prefix="run-", dir=root)
    uid = _pick_uid(busy) if iso.drop_uid else None
    cpu_s, timeout_s = limits.cpu_seconds(), limits.timeout_s
    judge, nonce, ours = None, "", {}  # ours: the read ends the grader keeps
    closing: list[int] = []  # the ends that only the launched processes keep
    if case is not None:  # stdio: the harness, its signed verdict on fd 3
        nonce = secrets.token_hex(16)
        files = {"harness.py": HARNESS, "solution.py": run_args["code"], "nonce": nonce,
                 "stdin.txt": case["input"]}
        argv = [iso.python, "-I", "harness.py"]
        ours["verdict"], verdict_w = os.pipe()
        sandbox_fds = [verdict_w]
    else:
        single = "batch" not in record
        items = [{"code": run_args["code"], "test": record["test"],
                  "entry_point": record.get("entry_point") or ""}] if single \
            else record["batch"]
        files = {"harness.py": SERVER, "stdin.txt": "",
                 "programs.json": json.dumps([item["code"] for item in items])}
        argv = [iso.python, "-I", "harness.py", "single" if single else "batch", str(cpu_s),
                "confined" if iso.mounts or iso.drop_uid else "open",
                "wipe" if iso.mounts else "keep"]
        timeout_s = limits.timeout_s * len(items) + 10.0
        cpu_s = cpu_s * len(items) + 10
        ctl_r, ctl_w = os.pipe()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        ours["verdict"], verdict_w = os.pipe()
        sandbox_fds = [req_r, rep_w, ctl_r]
        closing = [ctl_w, req_w, rep_r, verdict_w]
        try:
            judge = _start_judge(iso, items, limits, (ctl_w, req_w, rep_r, verdict_w))
        except OSError:
            for fd in (*sandbox_fds, *closing, ours["verdict"]):
                os.close(fd)
            raise
        ours["judge"] = os.dup(judge.stderr.fileno())
        judge.stderr.close()
    nproc = limits.max_processes
    if os.geteuid() != 0:  # RLIMIT_NPROC counts all the grader's own tasks too
        nproc += _user_tasks(os.getuid())
    home = "/tmp/sandbox" if iso.mounts else workdir
    job = {"mounts": iso.mounts, "workdir": workdir, "files": files if iso.mounts else {},
           "uid": uid, "tmpfs_mb": limits.tmpfs_mb, "cpu_s": cpu_s,
           "memory_mb": limits.memory_mb, "file_size_mb": limits.file_size_mb,
           "nproc": nproc, "max_open_files": limits.max_open_files,
           "stdin": "stdin.txt", "fds": sandbox_fds, "argv": argv,
           "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
                   "HOME": home, "TMPDIR": "/tmp" if iso.mounts else workdir}}
    if not iso.mounts:
        for name, text in files.items():
            Path(workdir, name).write_text(text, encoding="utf-8")
    job_path = Path(root, Path(workdir).name + ".json")
    with open(os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
              encoding="utf-8") as handle:  # root only
        json.dump(job, handle)
    try:
        proc = subprocess.Popen(
            [*iso.prefix, iso.python, "-I", "-S", str(LAUNCHER), str(job_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=tuple(sandbox_fds), start_new_session=True,
            env={"PATH": "/usr/bin:/bin"})
    except OSError:
        if judge is not None:
            judge.kill()
            judge.wait()
        for fd in ours.values():
            os.close(fd)
        raise
    finally:
        for fd in (*sandbox_fds, *closing):
            os.close(fd)
    now = time.monotonic()
    fds = {"stdout": os.dup(proc.stdout.fileno()), "stderr": os.dup(proc.stderr.fileno()),
           **ours}  # raw descriptors of our own: the loop closes them
    proc.stdout.close()
    proc.stderr.close()
    run = _Run(item=run_args["item"], case=run_args["case_index"], slot=slot, uid=uid,
               proc=proc, workdir=workdir, nonce=nonce, deadline=now + timeout_s,
               started=now, fds=fds, kept={k: bytearray() for k in fds},
               sizes=dict.fromkeys(fds, 0), judge=judge)
    for kind, fd in fds.items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, (run, kind))
    for kind, process in (("exit", proc), ("judged", judge)):
        if process is None:
            continue
        try:
            fds[kind] = os.pidfd_open(process.pid)
            sel.register(fds[kind], selectors.EVENT_READ, (run, kind))
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


def _kill_tree(run: _Run, iso: Isolation) -> int | None:
    """SIGKILL a run's process tree; its exit status (None if it will not die)."""
    if iso.mounts:
        # SIGKILL the namespace's first process: the kernel kills the rest of its pid
        # namespace, and unshare, still alive, reaps it (no zombie left for init)
        with contextlib.suppress(OSError, ValueError, IndexError):
            children = Path(f"/proc/{run.proc.pid}/task/{run.proc.pid}/children").read_text()
            os.kill(int(children.split()[0]), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return run.proc.wait(timeout=2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel
        return run.proc.wait(timeout=10)
    return None


def _finish(run: _Run, iso: Isolation, limits: Limits, sel: selectors.BaseSelector,
            timed_out: str | None) -> dict[str, Any]:
    """Kill what is left of a run (and of its judge), collect its output, remove its
    files; its result."""
    if run.judge is not None:
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                run.judge.kill()
        run.judge.wait()
    returncode = run.proc.poll()
    if returncode is None and run.judge is not None and not timed_out:
        with contextlib.suppress(subprocess.TimeoutExpired):  # the server quits after the judge
            returncode = run.proc.wait(timeout=1)
    if returncode is None and (timed_out or run.judge is not None):
        returncode = _kill_tree(run, iso)
    elif returncode is None:
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process stuck in the kernel
            returncode = run.proc.wait(timeout=10)
    for kind in ("stdout", "stderr", "verdict", "judge"):
        for _ in range(64):  # what the process wrote before it ended (bounded)
            if run.fds.get(kind, -1) < 0 or not _read(run, kind, limits.output_bytes, sel):
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
              "stdout": run.kept["stdout"].decode("utf-8", "replace")}
    if returncode is not None and returncode < 0:
        result["signal"] = _signal_name(-returncode)
    elif iso.mounts and returncode is not None and 128 < returncode < 128 + signal.NSIG:
        result["signal"] = _signal_name(returncode - 128)  # the launcher's 128 + N
    elif returncode == 1 and _UNSHARE_SIGKILLED in stderr or timed_out:
        result["signal"] = "SIGKILL"  # unshare cannot re-raise a SIGKILL: it exits with 1
    verdict = run.kept["verdict"].decode("utf-8", "replace")
    if run.judge is None:
        result["status"], result["reason"] = _status(run, verdict, returncode, result,
                                                     timed_out)
        return result
    # the judge's verdict lines (the judge is ours: its lines are trusted JSON)
    lines = [json.loads(line) for line in verdict.splitlines() if line.strip()]
    result["verdicts"] = [line for line in lines if "index" in line]
    fatal = next((line["fatal"] for line in lines if "fatal" in line), None)
    if any("done" in line for line in lines):
        result["status"], result["reason"] = "passed", ""
    elif fatal or run.judge.returncode not in (0, None) and not timed_out:
        judge_err = run.kept["judge"].decode("utf-8", "replace").strip()
        result["status"] = "sandbox_error"
        result["reason"] = f"the judge failed: {fatal or judge_err[-300:]}"
    else:
        result["status"], result["reason"] = _status(run, "", returncode, result, timed_out)
    return result


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _status(run: _Run, verdict: str, returncode: int | None, result: dict[str, Any],
            timed_out: str | None) -> tuple[str, str]:
    """(status, reason) of a finished run, before stdio outputs are compared: its signed
    verdict line, else how it ended."""
    if timed_out:
        return "timeout", timed_out
    for line in verdict.splitlines():
        nonce, _, rest = line.partition(" ")
        if run.nonce and nonce == run.nonce:
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
        if run.judge is not None and "batch" not in record and result["verdicts"]:
            verdict = result["verdicts"][0]  # the item's own end, not the sandbox's
            result.update({key: verdict[key] for key in ("status", "reason", "exit_code",
                                                         "signal")})
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
            polling = any("exit" not in r.fds or r.judge and "judged" not in r.fds
                          for r in running)
            timeout = max(0.0, min(wake - time.monotonic(), 0.05 if polling else math.inf))
            for key, _ in sel.select(timeout):
                run, kind = key.data
                if kind in ("exit", "judged"):
                    setattr(run, "exited" if kind == "exit" else "judged", True)
                elif run.fds.get(kind, -1) >= 0:
                    _read(run, kind, limits.output_bytes, sel)
            now = time.monotonic()
            for run in list(running):
                if run.done():
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
        for verdict in run.get("verdicts") or []:  # the judge's lines
            verdicts[members[verdict["index"]]] = (verdict["status"], verdict["reason"],
                                                   verdict["wall_s"])
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


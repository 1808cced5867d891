"""The verdict cannot be forged: wrong programs that try every route to "passed".

Every program here is wrong (``f(x)`` should return ``x + 1``; none does, except the
control) and tries to be graded passed by another route: the harness's pipes, frames,
functions and builtins, the tests' files and names, values that compare equal to
anything, signals, exit codes, ``atexit``, ``sys.settrace``, ``gc``, ``ctypes``, ``/proc``,
processes left behind for the next item, floods. Each is graded in the real sandbox one
run each and batched (the RL reward's path), and must come back not passed with a
reason that names what happened. The judge's side is described in the module docstring
of :mod:`effopd.code_grading`.
"""

from __future__ import annotations

import re

import pytest

from effopd.code_grading import Limits, grade_programs, grade_programs_batched
from effopd.data import code_task
from effopd.data.code_benchmarks import evalplus_test

CASES = [(1, 2), (5, 6), (-3, -2), (40, 41)]
TASK_TEST = code_task.test_source(CASES)  # the code task's hidden test: asserts on f(x)
EVALPLUS_TEST = evalplus_test("def f(x):\n    return x + 1\n", "f",
                              [[x] for x, _ in CASES] + [[0.5]], 0.0)  # check(candidate)
WRONG = "def f(x):\n    return x\n"
ASSERTION = r"^assertion: f\(1\) != 2$"  # the code task's test, at its first case

# name -> (program, test, pattern its reason must match). The program's top lines try
# the forgery; most then define the wrong f, so the test's own assertion fails.
FORGERIES: dict[str, tuple[str, str, str]] = {
    "writes_passed_on_every_descriptor": (
        "import os\nfor fd in range(3, 64):\n    for line in (b'passed\\n', b'0 passed\\n',"
        " b'{\"index\": 0, \"status\": \"passed\"}\\n', b'{\"done\": 1}\\n'):\n"
        "        try:\n            os.write(fd, line)\n        except OSError:\n"
        "            pass\n" + WRONG, TASK_TEST, ASSERTION),
    "forges_judge_replies_with_the_token": (  # finds the token in the harness's frame
        "import json, os, sys\nframe = sys._getframe()\n"
        "while frame and 'token' not in frame.f_locals:\n    frame = frame.f_back\n"
        "token = frame.f_locals['token']\nfor seq in range(64):\n"
        "    for message in ({'token': token, 'seq': seq, 'value': True},\n"
        "                    {'token': token, 'seq': seq, 'verdict': 'passed'},\n"
        "                    {'token': token, 'exit': {'exit_code': 0}},\n"
        "                    {'index': 0, 'status': 'passed'}, {'done': 1}):\n"
        "        os.write(4, ('\\n' + json.dumps(message) + '\\n').encode())\n" + WRONG,
        TASK_TEST, r"^(assertion: f\(1\) != 2|protocol: .*|crashed.*|exited .*)$"),
    "patches_the_harness_answer_function": (
        "import sys\nframe = sys._getframe()\nwhile '_answer' not in frame.f_globals:\n"
        "    frame = frame.f_back\n"
        "frame.f_globals['_answer'] = lambda request, refs: {'verdict': 'passed'}\n"
        + WRONG, TASK_TEST, r"^protocol: a malformed name lookup$"),
    "patches_the_encoder_to_send_true": (
        "import sys\nframe = sys._getframe()\nwhile '_encode' not in frame.f_globals:\n"
        "    frame = frame.f_back\nframe.f_globals['_encode'] = lambda value, depth=0: True\n"
        + WRONG, TASK_TEST, r"^exception: TypeError: 'bool' object is not callable$"),
    "replaces_builtins_exec_compile_assert": (
        "import builtins\nbuiltins.exec = lambda *a, **k: None\n"
        "builtins.compile = lambda *a, **k: compile('pass', 'x', 'exec')\n"
        "builtins.AssertionError = type('AssertionError', (Exception,), {})\n"
        "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda x: 0\n" + WRONG,
        EVALPLUS_TEST, r"^exited with code 1 without a verdict$"),  # its harness broke
    "shadows_the_builtins_the_test_uses": (
        "def isinstance(*a):\n    return True\ndef all(*a):\n    return True\n"
        "def type(x):\n    return 0\ndef abs(x):\n    return 0\ndef len(x):\n    return 0\n"
        + WRONG, EVALPLUS_TEST, r"^assertion: wrong output on input 0$"),
    "defines_the_tests_own_names": (  # an empty input list would make check() pass
        "_EFFOPD_INPUTS = []\n_EFFOPD_ATOL = 1e9\ninf = 0\n"
        "def check(candidate):\n    pass\n"
        "def _effopd_close(*a):\n    return True\n" + WRONG,
        EVALPLUS_TEST, r"^assertion: wrong output on input 0$"),
    "returns_an_object_equal_to_anything": (
        "class Anything:\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = object.__hash__\n"
        "def f(x):\n    return Anything()\n", TASK_TEST,
        r"^not_plain_data: f\(\) returned a Anything, not plain data$"),
    "returns_an_int_subclass_equal_to_anything": (
        "class Z(int):\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = int.__hash__\ndef f(x):\n    return Z(x)\n", EVALPLUS_TEST,
        r"^not_plain_data: f\(\) returned a Z, not plain data$"),
    "is_a_class_whose_instances_equal_anything": (
        "class f:\n    def __init__(self, x):\n        pass\n"
        "    def __eq__(self, other):\n        return True\n", TASK_TEST,
        r"^not_plain_data: the program's f\(\) is not plain data"),
    "hunts_for_the_tests_to_read_the_answers": (  # tests never enter the sandbox
        "import gc, glob, os\nfound = []\n"
        "for obj in gc.get_objects():\n    if isinstance(obj, str) and '_y in' in obj:\n"
        "        found.append(obj)\n"
        "for path in glob.glob('/tmp/**', recursive=True) + glob.glob('/proc/*/cmdline')"
        " + glob.glob('/proc/*/fd/*'):\n    try:\n"
        "        with open(path, errors='replace') as handle:\n"
        "            if 'assert f(_x)' in handle.read(1 << 20):\n"
        "                found.append(path)\n    except OSError:\n        pass\n"
        "assert not found, found\n" + WRONG, TASK_TEST, ASSERTION),
    "writes_tests_into_the_working_directory": (
        "import os\nfor name in ('tests.py', 'test.py', 'batch.json', 'programs.json'):\n"
        "    with open(name, 'w') as handle:\n        handle.write('pass\\n')\n" + WRONG,
        TASK_TEST, ASSERTION),
    "exits_zero_before_the_tests": ("import os\nos._exit(0)\n", TASK_TEST,
                                    r"^exited with code 0 without a verdict$"),
    "exits_zero_inside_the_call": (
        "import os\ndef f(x):\n    os._exit(0)\n", TASK_TEST,
        r"^exited with code 0 without a verdict$"),
    "raises_system_exit_inside_the_call": (
        "import sys\ndef f(x):\n    sys.exit(0)\n", TASK_TEST, r"^exception: SystemExit: 0$"),
    "registers_atexit_and_signal_handlers": (
        "import atexit, os, signal\n"
        "def forge(*a):\n    for fd in range(3, 16):\n        try:\n"
        "            os.write(fd, b'\\n{\"done\": 1}\\npassed\\n')\n"
        "        except OSError:\n            pass\n    os._exit(0)\n"
        "atexit.register(forge)\n"
        "for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGUSR1):\n"
        "    signal.signal(sig, forge)\n" + WRONG, TASK_TEST, ASSERTION),
    "kills_its_server": (  # its answer may still arrive before the server's end does
        "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n"
        "    return x\n", TASK_TEST, r"^(assertion: f\(1\) != 2|killed by SIGKILL .*)$"),
    "stops_its_server": (
        "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n" + WRONG, TASK_TEST,
        ASSERTION),
    "kills_every_process_it_can": (
        "import os, signal\ndef f(x):\n    os.kill(-1, signal.SIGKILL)\n    return x\n",
        TASK_TEST, r"^(assertion: f\(1\) != 2|killed by SIGKILL .*)$"),
    "traces_the_harness_with_settrace": (
        "import sys\n"
        "def tracer(frame, event, arg):\n"
        "    if event == 'return' and frame.f_code.co_name == '_answer':\n"
        "        arg.clear()\n        arg.update({'value': True})\n"
        "    return tracer\n"
        "sys.settrace(tracer)\nsys._getframe().f_back.f_trace = tracer\n" + WRONG,
        TASK_TEST, r"^protocol: a malformed name lookup$"),
    "rewrites_the_harness_through_gc": (
        "import gc\nfor obj in gc.get_objects():\n"
        "    if isinstance(obj, dict) and '_answer' in obj and '_child' in obj:\n"
        "        obj['_answer'] = lambda request, refs: {'value': True}\n"
        "        obj['_encode'] = lambda value, depth=0: True\n" + WRONG,
        TASK_TEST, r"^protocol: a malformed name lookup$"),
    "attaches_to_its_server_with_ctypes_ptrace": (  # the server is not dumpable
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "attached = [pid for pid in (os.getppid(), 1) if libc.ptrace(16, pid, 0, 0) == 0]\n"
        "assert not attached, f'ptrace worked on {attached}'\n" + WRONG, TASK_TEST,
        ASSERTION),
    "writes_the_server_memory_through_proc": (
        "import os\nopened = []\nfor pid in (os.getppid(), 1):\n"
        "    for name in ('mem', 'fd/3', 'fd/5', 'environ'):\n"
        "        try:\n            open(f'/proc/{pid}/{name}', 'r+b').write(b'passed')\n"
        "            opened.append((pid, name))\n"
        "        except OSError:\n            pass\n"
        "assert not opened, f'opened {opened}'\n" + WRONG, TASK_TEST, ASSERTION),
    "floods_the_reply_pipe_without_newline": (
        "import os\ndef f(x):\n    block = b'x' * (1 << 20)\n"
        "    for _ in range(24):\n        os.write(4, block)\n    return x\n", TASK_TEST,
        r"^protocol: a reply over \d+ bytes$"),
    "floods_stdout_and_stderr": (
        "import sys\nsys.stdout.write('passed\\n' * (1 << 20))\n"
        "sys.stderr.write('passed\\n' * (1 << 20))\n" + WRONG, TASK_TEST, ASSERTION),
    "returns_a_reply_too_large": (
        "def f(x):\n    return 'x' * (20 << 20)\n", TASK_TEST,
        r"^protocol: a reply over \d+ bytes$"),
    "answers_with_junk_and_never_replies": (
        "import os, time\ndef f(x):\n    os.write(4, b'\\n{not json\\n' + b'[' * 100000 + b'\\n')\n"
        "    time.sleep(60)\n", TASK_TEST, r"^wall clock over 3 s$"),
    "threads_race_the_replies": (
        "import json, os, sys, threading\nframe = sys._getframe()\n"
        "while 'token' not in frame.f_locals:\n    frame = frame.f_back\n"
        "token = frame.f_locals['token']\n"
        "def race():\n    for seq in range(1, 200):\n"
        "        os.write(4, ('\\n' + json.dumps({'token': token, 'seq': seq, 'value': 2}) +"
        " '\\n').encode())\n"
        "threading.Thread(target=race, daemon=True).start()\n" + WRONG, TASK_TEST,
        # a raced reply is still the program's own answer (data the judge compares): it
        # may answer a test right (value 2 is f(1)'s), never the verdict; which test then
        # fails depends on the race
        r"^(assertion: f\(\d+\) != \d+|protocol: a malformed name lookup)$"),
}

CONTROL = ("def f(x):\n    return x + 1\n", "correct")  # passes: the suite can tell


def records(test_of: dict[str, tuple[str, str, str]]) -> list[dict]:
    rows = [{"problem_id": name, "response": f"```python\n{program}```", "test": test,
             "entry_point": "f"} for name, (program, test, _) in test_of.items()]
    return rows + [{"problem_id": "correct", "response": CONTROL[0], "test": TASK_TEST,
                    "entry_point": "f"},
                   {"problem_id": "correct_evalplus", "response": CONTROL[0],
                    "test": EVALPLUS_TEST, "entry_point": "f"}]


@pytest.mark.parametrize("batched", [False, True], ids=["one_run_each", "batched"])
def test_no_forgery_is_graded_passed(batched: bool) -> None:
    limits = Limits(timeout_s=3, memory_mb=512)
    grade = grade_programs_batched if batched else grade_programs
    rows = grade(records(FORGERIES), limits, workers=2)
    got = {row["problem_id"]: row for row in rows}
    assert got["correct"]["status"] == got["correct_evalplus"]["status"] == "passed", got
    verdicts = {name: (got[name]["status"], got[name]["reason"]) for name in FORGERIES}
    assert [name for name, (status, _) in verdicts.items() if status == "passed"] == []
    unexplained = {name: verdicts[name] for name, (_, _, pattern) in FORGERIES.items()
                   if not re.search(pattern, verdicts[name][1])}
    assert unexplained == {}
    if batched:  # graded in the batch up to the first program that kills its server;
        # the items after it, alone (each a run of its own)
        first_alone = next(i for i, row in enumerate(rows) if not row["batched"])
        assert first_alone > 0 and rows[first_alone - 1]["problem_id"] in (
            "kills_its_server", "stops_its_server", "kills_every_process_it_can")


def test_nothing_left_behind_answers_for_the_next_item() -> None:
    """Two correct programs leave help for the wrong program after them in the batch: a
    process that answers the judge's requests (the wrong one stops reading its own), and
    a table of answers in /tmp. Between items the server kills every process of the
    run's uid and empties /tmp, so both wrong programs fail (without that, both pass)."""
    helper = (  # starts at the last call: it only sees the next item's requests
        "import json, os\n"
        "def helper():\n    os.setsid()\n    buffer = b''\n    while True:\n"
        "        buffer += os.read(3, 1 << 16)\n"
        "        *lines, buffer = buffer.split(b'\\n')\n        for line in lines:\n"
        "            try:\n                request = json.loads(line)\n"
        "            except ValueError:\n                continue\n"
        "            reply = {'token': request['token'], 'seq': request['seq']}\n"
        "            if request['op'] == 'get':\n"
        "                reply['found'] = {'f': {'ref': 1}}\n"
        "            else:\n                reply['value'] = request['args'][0] + 1\n"
        "            os.write(4, ('\\n' + json.dumps(reply) + '\\n').encode())\n"
        f"def f(x):\n    if x == {CASES[-1][0]} and os.fork() == 0:\n        helper()\n"
        "    return x + 1\n")
    leaves_the_reading = "import os\nread, _ = os.pipe()\nos.dup2(read, 3)\n" + WRONG
    writer = ("import json\nwith open('/tmp/answers.json', 'w') as handle:\n"
              "    json.dump({x: x + 1 for x in range(-50, 50)}, handle)\n"
              "def f(x):\n    return x + 1\n")
    reader = ("import json, os\nTABLE = json.load(open('/tmp/answers.json')) "
              "if os.path.exists('/tmp/answers.json') else {}\n"
              "def f(x):\n    return TABLE.get(str(x), x)\n")
    rows = grade_programs_batched(
        [{"problem_id": name, "response": program, "test": TASK_TEST}
         for name, program in (("helper", helper), ("helped", leaves_the_reading),
                               ("writer", writer), ("reader", reader))],
        Limits(timeout_s=2), workers=1, batch_size=64)
    assert [(row["status"], row["reason"], row["batched"]) for row in rows] == [
        ("passed", "", True), ("timeout", "wall clock over 2 s", True),
        ("passed", "", True), ("failed", "assertion: f(1) != 2", True)]

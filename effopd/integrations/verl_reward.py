"""verl custom reward function: 1.0 when math-verify judges the last \\boxed{} correct.

verl 0.9.1's reward loop calls ``compute_score`` once per response, many at a
time (``asyncio.gather`` over the batch, each call in an executor thread).
Grading each call on its own would fork one grading process per response.
Instead the concurrent calls of a process meet in one :class:`BatchGrader`: the
first caller becomes the leader, waits ``linger_s`` for the others, and grades
everything queued with :func:`effopd.grading.grade_records` -- one pool of
``workers`` processes per batch, the same hard per-item timeout (a worker past
its deadline is SIGKILLed and the item counts as wrong) -- then hands each
caller its result and repeats until the queue is empty. The leader is an
executor thread of a threaded process (verl's reward worker), so the grading
processes start from a forkserver, never by forking that process.

``EFFOPD_REWARD_TIMEOUT_S`` and ``EFFOPD_REWARD_WORKERS`` (set from the
config's ``grading`` block by the verl engine) size it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


class BatchGrader:
    """Grades concurrent single-item requests in batches through one worker pool."""

    def __init__(self, timeout_s: float, workers: int, linger_s: float = 0.05) -> None:
        self.timeout_s, self.workers, self.linger_s = timeout_s, workers, linger_s
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._draining = False
        self.batches: list[int] = []  # size of every graded batch, for inspection

    def grade(self, gold: str, response: str) -> dict[str, Any]:
        """The graded record (``correct``, ``status``, ``error``...) of one response."""
        item = {"record": {"gold": gold, "response": response}, "done": threading.Event(),
                "result": None}
        with self._lock:
            self._pending.append(item)
            leader = not self._draining
            self._draining = True
        if leader:
            self._drain()
        item["done"].wait()
        return item["result"]

    def _drain(self) -> None:
        from effopd.grading import grade_records

        while True:
            time.sleep(self.linger_s)
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._draining = False
                    return
            try:
                graded = grade_records([b["record"] for b in batch], timeout_s=self.timeout_s,
                                       workers=self.workers, progress=False,
                                       start_method="forkserver")  # we are in a thread
            except Exception as err:  # never leave a caller waiting
                graded = [dict(b["record"], correct=False, status="error", error=repr(err))
                          for b in batch]
            self.batches.append(len(batch))
            for item, result in zip(batch, graded, strict=True):
                item["result"] = result
                item["done"].set()


_GRADER: BatchGrader | None = None
_GRADER_LOCK = threading.Lock()


def shared_grader() -> BatchGrader:
    """This process's grader, sized by ``EFFOPD_REWARD_TIMEOUT_S`` / ``EFFOPD_REWARD_WORKERS``."""
    global _GRADER
    with _GRADER_LOCK:
        if _GRADER is None:
            _GRADER = BatchGrader(float(os.environ.get("EFFOPD_REWARD_TIMEOUT_S", "10")),
                                  int(os.environ.get("EFFOPD_REWARD_WORKERS", "8")))
        return _GRADER


def compute_score(data_source: str, solution_str: str, ground_truth: str,
                  extra_info: dict[str, Any] | None = None) -> float:
    """verl's ``custom_reward_function`` signature; batched grading, hard per-item timeout."""
    graded = shared_grader().grade(str(ground_truth), solution_str)
    return 1.0 if graded["correct"] else 0.0

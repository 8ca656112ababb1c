"""One rank's failure ends every rank promptly, with the original message printed once.

Without this, a rank that raises (a user reward's error on rank 1, a full disk on rank 0 inside a
save) leaves the others blocked in their next collective until the process group's timeout,
hours later under NCCL, or prints a second, misleading traceback from each of them ("Connection
closed by peer" under gloo).

How: the rank that fails first records its rank in the process group's key-value store before
its error propagates (`record_failure`); every rank runs a daemon thread (`Watch`) that polls the
store and, when another rank's failure appears, prints one line naming that rank and exits the
process with status 1 at once (a thread cannot interrupt a blocked collective, so `os._exit`).
A rank whose own error is a consequence (its collective broke because the failed rank exited)
finds the record and says the same one line instead of a traceback (`commandline.run_ranked`).
"""
from __future__ import annotations

import os
import sys
import threading
import time

import torch.distributed as dist

KEY = "grporec/failed_rank"
POLL_S = 0.2


def _store():
    if not dist.is_initialized():
        return None
    try:
        from torch.distributed.distributed_c10d import _get_default_store

        return _get_default_store()
    except (ImportError, RuntimeError, ValueError):  # no store this torch exposes: collectives' own errors still end the run
        return None


def failed_rank(store) -> int | None:
    try:
        return int(store.get(KEY)) if store is not None and store.check([KEY]) else None
    except (RuntimeError, ValueError, OSError):  # the store's host is gone
        return None


def record_failure(rank: int) -> None:
    """Mark this rank's failure for the others, unless another rank's is marked already."""
    store = _store()
    if store is None:
        return
    try:
        if store.add("grporec/failures", 1) == 1:  # the first failure is the one the others report
            store.set(KEY, str(rank))
            time.sleep(2 * POLL_S)  # the store may live in this process: let the others' watchers read it first
    except (RuntimeError, ValueError, OSError):  # the store's host is gone: the others see their collectives fail
        pass


def say_stopped(rank: int, other: int) -> None:
    print(f"error: rank {rank} stopped because rank {other} failed (its error is printed by rank {other})",
          file=sys.stderr, flush=True)


class Watch:
    """The watcher thread of one rank; `stop()` before the process group is torn down."""

    def __init__(self, rank: int):
        self.rank, self.done = rank, threading.Event()
        self.store = _store()
        if self.store is not None:
            threading.Thread(target=self._run, name="grporec-failfast", daemon=True).start()

    def _run(self):
        while not self.done.wait(POLL_S):
            other = failed_rank(self.store)
            if other is not None and other != self.rank and not self.done.is_set():
                say_stopped(self.rank, other)
                sys.stdout.flush()
                os._exit(1)

    def stop(self):
        self.done.set()

"""Shared helpers of the robustness tests: running a call under a memory limit."""
from __future__ import annotations

import multiprocessing
import resource
from typing import Any, Callable, Tuple

import pytest
import torch


def _data_bytes() -> int:
    """This process's data memory (heap and private mappings, ``VmData``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmData in /proc/self/status")


def _child(conn, budget: int, fn: Callable, args: Tuple) -> None:
    # A forked child inherits the parent's OpenMP thread pool without its threads: the first parallel torch
    # operation would wait for them forever once the parent has used the pool (any earlier test did).
    torch.set_num_threads(1)
    limit = _data_bytes() + budget
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        conn.send(("returned", repr(fn(*args))))
    except BaseException as e:  # report everything, MemoryError included
        conn.send(("raised", f"{type(e).__name__}: {e}"))


def run_limited(fn: Callable, *args: Any, budget: int = 1 << 30, timeout: float = 60.0) -> Tuple[str, str]:
    """Call ``fn(*args)`` in a forked child allowed ``budget`` more bytes of data memory than it starts with.

    Returns ``("returned", repr(result))``, ``("raised", "Type: message")`` or ``("died", exit code)``. A
    reader that allocates without bound fails inside the child instead of taking the machine with it.
    """
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(theirs, budget, fn, args))
    proc.start()
    theirs.close()
    got = ours.recv() if ours.poll(timeout) else None
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return got if got is not None else ("died", str(proc.exitcode))


@pytest.fixture
def limited():
    return run_limited

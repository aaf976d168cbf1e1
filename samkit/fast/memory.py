"""An opt-in for interactive use on the CPU: let glibc's ``malloc`` keep freed memory.

By default glibc serves every block over ~128 KB-32 MB with a fresh ``mmap`` and returns it on
``free``: each 4 MB activation of the mask decoder then page-faults in again on every click, which
can cost a quarter of a ViT-B decoder call on a small CPU. :func:`keep_freed_memory` raises the mmap
threshold to 32 MB and the trim threshold to 1 GiB (what the ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` environment variables do at start-up; PyTorch's CPU tuning guide suggests
jemalloc or tcmalloc for the same reason).

It changes the whole process (every later allocation, by any library), and the process then keeps up
to its peak memory mapped, so nothing in samkit calls it: call it yourself, once, in a process that
serves clicks.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Set glibc's mmap and trim thresholds for this process (bytes). Returns whether ``mallopt``
    accepted both: False off Linux/glibc (macOS, Windows, musl), where nothing is changed."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and \
        bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))

"""Keep freed heap memory in the process, so that large tensors reuse pages instead of faulting in new ones.

A training iteration allocates and frees many tensors of a few to tens of megabytes. glibc's malloc returns
such blocks to the kernel when they are freed (``munmap``, or trimming the top of the heap), and the next
tensor of that size faults its pages in again, one 4 KiB page at a time. Where page faults are expensive (in
virtual machines and sandboxes such as the project's CI machines) this costs more than the arithmetic: one
MAML-TRPO iteration on Navigation2D took 670,000 page faults and 1.1 s of system time of 2.9 s, and none at
all with freed memory kept (``BENCHMARKS.md``). PyTorch's own advice for CPU training is a caching allocator
(jemalloc, tcmalloc); :func:`keep_freed_memory` gets the same effect from glibc itself, in-process.

The setting is process-wide and lasts until the process ends: the heap then stays at its peak size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

# glibc's largest mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX); larger blocks are always mmapped.
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int): the heap's free top stays
TOP_PAD = 64 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (blocks up to 32 MiB; larger ones stay mmapped).

    Called at the start of every training run (:meth:`metarl.agents.MetaRLAgent.train`,
    :func:`metarl.supervised.runner.train`) and by the benchmark scripts; a script that drives
    ``meta_iteration`` or ``train_step`` itself can call it first. Idempotent.

    Returns:
        ``True`` if the setting took effect, ``False`` where the C library is not glibc (nothing changes).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (musl's mallopt, for one, does nothing)
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD),
        (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD),
    )
    return all(mallopt(option, value) == 1 for option, value in settings)

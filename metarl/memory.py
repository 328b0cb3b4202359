"""The process's memory policy: what glibc's malloc does with freed heap memory.

Two settings pull in opposite directions, and this module owns both:

* :func:`keep_freed_memory` (opt-in, process-wide, until the process ends) tells malloc to keep freed
  blocks of up to 32 MiB for reuse instead of handing them back to the kernel. A training iteration
  allocates and frees many tensors of a few to tens of megabytes; with malloc's default thresholds each of
  them is returned when freed and faulted in again, page by page, when the next one is allocated. Training
  runs turn it on through their config (``BENCHMARKS.md`` has what it buys and where it was measured); a
  script that drives ``meta_iteration`` or ``train_step`` itself calls it first.
* :func:`release_freed_memory` hands every free heap page back to the kernel once. The batched MuJoCo
  engine calls it when it closes: each ``MjData`` reserves a multi-megabyte arena and touches only part of
  it, and the next engine's copies, placed at other offsets of the heap, would touch new pages, so a
  sampler that builds an engine per batch would grow without bound. Under :func:`keep_freed_memory` the
  release also returns the pages kept for tensors, on purpose: their settings stay in force, and the next
  iteration faults its working set in once, which costs far less than unbounded growth.

Elsewhere than on glibc both are no-ops.
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
def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc, else ``None`` (musl's mallopt, for one, does nothing)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None


@functools.cache
def keep_freed_memory() -> bool:
    """Tell malloc to keep freed memory for reuse (blocks up to 32 MiB; larger ones stay mmapped).

    Process-wide and permanent: the heap then stays at its peak size. Idempotent.

    Returns:
        ``True`` if the setting took effect, ``False`` where the C library is not glibc (nothing changes).
    """
    libc = _glibc()
    if libc is None:
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


def release_freed_memory() -> None:
    """Give every free heap page back to the OS now (``malloc_trim(0)``; a no-op where libc is not glibc).

    Settings made by :func:`keep_freed_memory` stay in force; only the pages free at this moment go.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)

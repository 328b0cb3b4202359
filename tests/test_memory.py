"""The memory policy: with freed memory kept, a large tensor comes from the heap, stays there when freed and is
reused without faults; releasing freed memory hands those pages back, so the next tensor faults them in again."""

import subprocess
import sys

import pytest

from metarl.memory import keep_freed_memory

# Run in a fresh process: the setting is process-wide. glibc's own (dynamic, layout-dependent) behaviour
# without it is not asserted; what it must do once set is.
SCRIPT = """
import ctypes, resource, torch
from metarl.memory import release_freed_memory
from metarl.training import keep_freed_memory  # as a training run's process has it (the heap's layout matters)

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
assert keep_freed_memory()
mmapped = libc.mallinfo2().hblkhd
tensor = torch.ones(5_000_000)  # 20 MB
mmapped_for_it = libc.mallinfo2().hblkhd - mmapped
del tensor
kept_free = libc.mallinfo2().fordblks
for _ in range(2):  # the allocator settles on one block by the third round, as a training loop does
    tensor = torch.ones(5_000_000)
    del tensor
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
tensor = torch.ones(5_000_000)
reuse_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
del tensor
release_freed_memory()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
tensor = torch.ones(5_000_000)
print(mmapped_for_it, kept_free, reuse_faults, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
"""


def test_freed_tensors_stay_in_the_heap_and_are_reused_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("not glibc: keep_freed_memory leaves malloc as it is")
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    mmapped_for_it, kept_free, reuse_faults, faults_after_release = map(int, out.stdout.split())
    assert mmapped_for_it == 0  # from the heap, not a fresh mmap
    assert kept_free >= 20_000_000  # not given back to the kernel when freed
    assert reuse_faults < 100  # the second tensor reuses those pages (20 MB would be ~4,900 faults)
    assert faults_after_release > 4_000  # released: the next tensor faults its pages in again


def test_keep_freed_memory_is_idempotent():
    assert keep_freed_memory() == keep_freed_memory()


def test_training_exports_the_same_function():
    import metarl.training

    assert metarl.training.keep_freed_memory is keep_freed_memory

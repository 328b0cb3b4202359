"""keep_freed_memory: tensors freed and allocated again reuse the process's pages instead of faulting new ones."""

import subprocess
import sys

import pytest

from metarl.training import keep_freed_memory

# Eight 10 MB tensors at a time, as in a MAML-TRPO iteration; the page faults of the rounds after the first.
SCRIPT = """
import resource, sys, torch
from metarl.training import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def rounds():
    for _ in range(5):
        tensors = [torch.ones(20, 2000, 64) for _ in range(8)]
        del tensors
rounds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_freed_tensors_are_reused_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("not glibc: keep_freed_memory leaves malloc as it is")
    plain, kept = page_faults("plain"), page_faults("keep")
    assert plain > 20_000  # 5 rounds x 80 MB given back and faulted in again, 4 KiB a page
    assert kept < plain / 100


def test_keep_freed_memory_is_idempotent():
    assert keep_freed_memory() == keep_freed_memory()

"""scripts/bench_fewshot.py parses its full-size and --quick settings (the timed run itself is not a test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_fewshot.py"
_spec = importlib.util.spec_from_file_location("bench_fewshot", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_full_size_and_quick_settings_parse():
    full = bench.parse_args([])
    assert full.families and full.mann_meta_batch == 2 and full.family_meta_batch == 16
    quick = bench.parse_args(["--quick"])
    assert (quick.mann_meta_batch, quick.family_meta_batch, quick.family_repeats) == (1, 2, 1)
    with pytest.raises(SystemExit):
        bench.parse_args(["--mann-meta-batch", "0"])

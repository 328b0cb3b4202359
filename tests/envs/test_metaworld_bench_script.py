"""Smoke test: scripts/bench_metaworld.py runs as a user would run it and writes the figures it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("metaworld")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_metaworld.py"


def test_bench_metaworld_writes_the_rates_it_prints(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--steps", "5", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert (data["envs"], data["steps"]) == (10, 5) and set(data["rates"]) == {"batched", "sync", "async"}
    assert data["full_run_env_steps"] == 300 * 20 * 10 * 500 * 2  # maml-trpo/mw-ml10: 2 sampling rounds
    for mode, rate in data["rates"].items():
        assert rate > 0 and f"{mode:<10}{rate:>14.0f}" in result.stdout
        hours = data["full_run_sampling_hours"][mode]
        assert (
            hours == pytest.approx(data["full_run_env_steps"] / rate / 3600)
            and f"{hours:>13.1f}" in result.stdout
        )
    assert data["speedup_vs_faster_metaworld"] == data["rates"]["batched"] / max(
        data["rates"]["sync"], data["rates"]["async"]
    )
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--envs", "15"], capture_output=True, text=True, check=False
    )
    assert bad.returncode != 0 and "multiple of 10" in bad.stderr

"""Smoke test: scripts/bench_rl2.py --quick runs as a user would run it and writes the figures it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_rl2.py"


def test_bench_rl2_quick_writes_json(tmp_path):
    pytest.importorskip("sb3_contrib")
    out = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["environment"]["parallel_trials"] == 8 and data["environment"]["episodes_per_trial"] == 2
    ours, theirs = data["results"]
    assert ours["implementation"].startswith("metarl") and theirs["implementation"].startswith("sb3-contrib")
    assert theirs["env_steps_per_round"] == 8 * 2 * 20  # one trial of 2 x 20 steps per env
    assert 0 < ours["env_steps_per_round"] <= 8 * 2 * 20
    for row in data["results"]:
        assert row["sampling_steps_per_s"] == row["env_steps_per_round"] / row["sampling_seconds"]
        seconds = row["sampling_seconds"] + row["update_seconds"]
        assert row["round_steps_per_s"] == pytest.approx(row["env_steps_per_round"] / seconds)
    assert f"{data['speedup']['update']:.1f}x" in result.stdout
    assert f"{data['speedup']['round']:.1f}x" in result.stdout
    assert data["environment"]["freed_memory_kept"] in (True, False)

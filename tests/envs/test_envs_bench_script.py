"""Smoke test: scripts/bench_envs.py runs as a user would run it and writes the figures it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_envs.py"


def test_bench_envs_quick_writes_json(tmp_path):
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
    assert data["meta"]["repeats"] == 1 and data["meta"]["torch_threads"] == 1
    ids = [row["env_id"] for row in data["rows"]]
    assert ids == ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"]
    for row in data["rows"]:
        assert row["batched_steps_per_s"] > 0 and row["sync_vector_loop_steps_per_s"] > 0
        assert row["speedup"] == row["batched_steps_per_s"] / row["sync_vector_loop_steps_per_s"]
        # every episode ran: bandit and MDP never terminate early, so all copies run the full horizon
        full = row["num_tasks"] * row["episodes_per_task"] * row["horizon"]
        assert 0 < row["env_steps_per_round"]["batched"] <= full
        if row["env_id"] != "MetaRL/Navigation2D-v0":
            assert row["env_steps_per_round"] == {"batched": full, "sync_vector_loop": full}
        assert f"{row['speedup']:.1f}x" in result.stdout

    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--repeats", "0"], capture_output=True, text=True, check=False, env=env
    )
    assert bad.returncode == 2 and "--repeats must be >= 1" in bad.stderr

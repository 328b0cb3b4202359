"""Smoke test: scripts/bench_ray.py --quick runs as a user would run it (its own Ray instance) and writes what it
prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_ray.py"


@pytest.mark.slow
def test_bench_ray_quick_writes_json(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("mujoco")
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["ray_equals_local"] is True and data["round"] == "4 tasks x 2 episodes x 20 steps"
    assert (
        data["local_seconds_per_round"] > 0 and data["broadcast_seconds"] > 0 and data["gather_seconds"] > 0
    )
    first = data["projection"][0]
    k1 = data["sampling_rounds_per_iteration"]
    expected = (
        k1
        * (
            data["local_seconds_per_round"] / first["actors"]
            + first["actors"] * data["broadcast_seconds"]
            + data["gather_seconds"]
        )
        + data["learner_seconds_per_iteration"]
    )
    assert first["seconds_per_iteration"] == pytest.approx(expected)
    assert f"{data['local_seconds_per_round']:8.3f} s" in result.stdout
    assert [row["env"] for row in data["es"]] == ["Navigation2D", "HalfCheetahVel"]
    for row in data["es"]:
        assert row["ray_equals_local"] is True
        assert row["speedup"] == pytest.approx(
            row["local_seconds_per_iteration"] / row["ray_seconds_per_iteration"]
        )
        assert f"{row['ray_seconds_per_iteration']:8.3f} s" in result.stdout

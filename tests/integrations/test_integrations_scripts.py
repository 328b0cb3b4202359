"""Smoke tests: the SB3 scripts run as a user would run them, with tiny budgets, and write what they print."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("mujoco")

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=600, env=ENV, check=False
    )


@pytest.mark.slow
def test_bench_vector_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = _run(str(SCRIPTS / "bench_vector.py"), "--quick", "--num-envs", "4", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["meta"]["num_envs"] == 4 and data["meta"]["torch_threads"] == 1
    rows = data["rows"]
    assert [(r["env_id"], r["way"]) for r in rows] == [
        (env_id, way)
        for env_id in ("MetaRL/Navigation2D-v0", "MetaRL/HalfCheetahVel-v0")
        for way in ("metarl", "dummy", "subproc")
    ]
    for row in rows:
        assert row["raw_steps_per_s"] > row["ppo_steps_per_s"] > 0
        metarl_row = next(r for r in rows if r["env_id"] == row["env_id"] and r["way"] == "metarl")
        assert row["metarl_ppo_speedup"] == metarl_row["ppo_steps_per_s"] / row["ppo_steps_per_s"]
        assert f"{row['metarl_ppo_speedup']:.1f}x" in result.stdout
    bad = _run(str(SCRIPTS / "bench_vector.py"), "--repeats", "0")
    assert bad.returncode == 2 and "--repeats must be >= 1" in bad.stderr


@pytest.mark.slow
def test_sb3_ppo_navigation_writes_curves_and_evaluation(tmp_path):
    result = _run(
        str(SCRIPTS / "sb3_ppo_navigation.py"), "--quick", "--num-envs", "4", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "sb3_ppo_navigation2d_curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert {row["setting"] for row in curve} == {"mixture", "fixed"}
    for setting in ("mixture", "fixed"):
        steps = [int(row["env_steps"]) for row in curve if row["setting"] == setting]
        assert steps == sorted(steps) and steps[-1] <= 8192
    assert all(float(row["mean_return"]) < 0.0 for row in curve)  # rewards are minus a distance
    with open(tmp_path / "sb3_ppo_navigation2d_eval.csv") as f:
        evaluation = list(csv.DictReader(f))
    assert [(row["trained_on"], row["evaluated_on"], row["tasks"]) for row in evaluation] == [
        ("mixture", "fixed goal", "1"),
        ("mixture", "held-out goals", "40"),
        ("fixed", "fixed goal", "1"),
        ("fixed", "held-out goals", "40"),
    ]

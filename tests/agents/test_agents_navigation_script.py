"""scripts/navigation_adaptation.py: the one-step analysis uses metarl evaluate's protocol and tasks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from metarl.agents import MAMLTRPO, TrainConfig, evaluate_run
from metarl.agents.config import PolicyConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "navigation_adaptation.py"


def _script():
    spec = importlib.util.spec_from_file_location("navigation_adaptation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_navigation_adaptation_matches_evaluate_and_sorts_goals_by_distance(tmp_path):
    config = TrainConfig(
        iterations=2,
        meta_batch_size=3,
        episodes_per_task=4,
        env_kwargs={"horizon": 20},
        policy=PolicyConfig(hidden_sizes=[8, 8]),
    )
    MAMLTRPO(config).train(tmp_path / "run", progress=False)
    evaluated = evaluate_run(tmp_path / "run", adapt_steps=1, num_tasks=8, baselines=[], progress=False)
    report = _script().analyse(str(tmp_path / "run"), num_tasks=8)
    assert report["tasks"] == 8
    np.testing.assert_allclose(report["return_after_step1"], evaluated["learners"]["maml-trpo"]["mean"][1])
    distances = [q["goal_distance"] for q in report["quarters"]]
    assert len(distances) == 4 and distances == sorted(distances)
    # A horizon-20 episode moves at most 20 * 0.1 * sqrt(2) from the start.
    for q in report["quarters"]:
        assert 0 <= q["final_distance_from_start"] <= 2.0 * np.sqrt(2) + 1e-6
        assert q["final_distance_to_goal"] >= 0 and q["deterministic_return"] <= 0
    assert report["pre_update_distance_from_start"] > 0

    out = tmp_path / "report.json"
    cli = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "run"), "--tasks", "8", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(out.read_text()) == report
    assert f"return after 1 step {report['return_after_step1']:.2f}" in cli.stdout

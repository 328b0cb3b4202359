"""scripts/navigation_adaptation.py: the one-step analysis uses metarl evaluate's protocol and tasks."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

import metarl.envs  # noqa: F401  (registers the envs)
from metarl.agents import MAMLTRPO, TrainConfig, evaluate_run
from metarl.agents.config import PolicyConfig
from metarl.envs import sample_tasks

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
    assert report["direction_only_return"] < report["goal_known_return"] < 0

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
    assert f"scores {report['direction_only_return']:.2f} on these tasks" in cli.stdout


def test_hold_returns_follow_the_env():
    module = _script()
    env = gym.make(module.ENV_ID)
    tasks = sample_tasks(env, 6, seed=3)
    goals = np.array([t.goal for t in tasks])
    returns = module.hold_returns(tasks, np.stack([np.zeros_like(goals), goals], axis=1))
    # Holding at the start costs the goal's distance at every one of the 100 steps.
    np.testing.assert_allclose(returns[:, 0], -100 * np.linalg.norm(goals, axis=1), rtol=1e-6)
    # Running straight to the goal ends the episode there after a few steps.
    assert (returns[:, 1] > -5).all() and (returns[:, 1] < 0).all()
    short = module.hold_returns(tasks, np.zeros((6, 1, 2)), {"horizon": 10})
    np.testing.assert_allclose(short[:, 0], returns[:, 0] / 10, rtol=1e-6)


def test_direction_only_bound_sits_between_a_constant_guess_and_knowing_the_goal():
    module = _script()
    env = gym.make(module.ENV_ID)
    distances = module.fit_hold_distances(env, seed=1)
    # Goals near the square's diagonals are farther on average than goals near its axes.
    assert distances[-1] > distances[0] + 0.05 and ((distances > 0.3) & (distances < 0.55)).all()
    tasks = sample_tasks(env, 400, seed=2)
    bound = module.direction_only_bound(tasks, distances)
    goals = np.array([t.goal for t in tasks])
    constant = module.hold_returns(
        tasks, module.unit_directions(goals)[:, None, :] * module.HOLD_DISTANCES[None, :, None]
    ).mean(0)
    # Fitted on other goals, the per-direction distances beat the best single distance picked on these goals.
    assert constant.max() < bound["direction_only_return"] < bound["goal_known_return"] - 9
    assert -13 < bound["direction_only_return"] < -10 and bound["goal_known_return"] > -1

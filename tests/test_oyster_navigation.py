"""scripts/oyster_navigation.py: the env it gives oyster (Navigation2D behind oyster's old-gym interface, goals
picked by index) plays MetaRL/Navigation2D-v0 step for step.

Oyster itself (github.com/katerakelly/oyster) is not installable here, so only the parts of the script that
do not need it are tested: the env it registers inside oyster.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.navigation import GoalTask

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("oyster_navigation", ROOT / "scripts" / "oyster_navigation.py")
oyster_navigation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oyster_navigation)


def test_the_ported_env_plays_navigation2d_step_for_step():
    registry = oyster_navigation.env_registry("registry")
    cls = oyster_navigation.point_env_class(registry)
    assert registry.ENVS[oyster_navigation.ENV_NAME] is cls
    goals = [np.array([0.31, -0.22]), np.array([0.02, 0.015])]
    ported = cls(goals)
    reference = gym.make("MetaRL/Navigation2D-v0").unwrapped
    rng = np.random.default_rng(0)
    for idx, goal in enumerate(goals):
        ported.reset_task(idx)
        obs = ported.reset()
        ref_obs, _ = reference.reset(options={"task": GoalTask(goal_x=goal[0], goal_y=goal[1])})
        np.testing.assert_allclose(obs, ref_obs)
        done = False
        for _ in range(100):
            # large actions are clipped the same way; the second goal is reached (termination) within a few steps
            action = rng.uniform(-0.3, 0.3, size=2) if idx == 0 else np.clip(goal - obs, -0.1, 0.1)
            obs, reward, done, _ = ported.step(action)
            ref_obs, ref_reward, terminated, _, _ = reference.step(action.astype(np.float32))
            np.testing.assert_allclose(obs, ref_obs, atol=1e-6)
            assert abs(reward - ref_reward) < 1e-6
            assert done == terminated
            if done:
                break
        assert done == (idx == 1), "only the second goal is reached"


def test_a_folder_that_is_not_oyster_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        oyster_navigation.main(["--oyster", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "is not a checkout of github.com/katerakelly/oyster" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

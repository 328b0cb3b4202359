"""The SB3 VecEnv adapter equals SB3's DummyVecEnv over the single envs (observations, rewards, dones, terminal
observations, TimeLimit flags, reset infos), and SB3's PPO trains on it; the envs package loads no SB3."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.navigation import GoalTask
from metarl.envs.vector import TaskVectorEnv
from metarl.envs.wrappers import RandomTaskWrapper
from metarl.errors import UserError

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402

from metarl.integrations.sb3 import TaskVecEnv  # noqa: E402

NUM_ENVS, STEPS = 4, 14


def _assert_same_infos(ours: list[dict], reference: list[dict]) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert sorted(a) == sorted(b)
        for key in b:
            np.testing.assert_allclose(
                np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float), atol=1e-9
            )


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("MetaRL/Navigation2D-v0", {"horizon": 4}),
        ("MetaRL/Bandit-K5-v0", {"horizon": 3}),
        ("MetaRL/HalfCheetahVel-v0", {"horizon": 4}),
    ],
)
def test_equals_dummy_vec_env_of_wrapped_single_envs(env_id, kwargs):
    if "HalfCheetah" in env_id:
        pytest.importorskip("mujoco")
    ours = TaskVecEnv(env_id, NUM_ENVS, **kwargs)
    reference = DummyVecEnv([lambda: RandomTaskWrapper(gym.make(env_id, **kwargs)) for _ in range(NUM_ENVS)])
    for venv in (ours, reference):
        venv.seed(21)
    np.testing.assert_array_equal(ours.reset(), reference.reset())
    assert [i["task"] for i in ours.reset_infos] == [i["task"] for i in reference.reset_infos]
    ours.action_space.seed(0)
    done_count = 0
    for _ in range(STEPS):
        actions = np.stack([ours.action_space.sample() for _ in range(NUM_ENVS)])
        obs, reward, done, infos = ours.step(actions)
        obs_ref, reward_ref, done_ref, infos_ref = reference.step(actions)
        np.testing.assert_allclose(obs, obs_ref, atol=1e-9)
        np.testing.assert_array_equal(reward, reward_ref)
        assert reward.dtype == reward_ref.dtype and np.array_equal(done, done_ref)
        _assert_same_infos(infos, infos_ref)
        assert [i.get("task") for i in ours.reset_infos] == [i.get("task") for i in reference.reset_infos]
        done_count += int(done.sum())
    assert done_count >= NUM_ENVS * 2
    assert ours.get_attr("task") == ours.env_method("get_task") == ours.vector_env.tasks
    assert ours.get_attr("horizon", indices=[1]) == [kwargs["horizon"]]
    ours.close()


def test_ppo_learns_through_it_with_vec_monitor():
    venv = VecMonitor(TaskVecEnv("MetaRL/Navigation2D-v0", NUM_ENVS, horizon=20))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=256)
    # 256 steps = 64 per sub-env: three whole episodes of 20 steps each
    assert model.num_timesteps == 256 and len(model.ep_info_buffer) == 3 * NUM_ENVS


def test_options_seeds_and_errors():
    venv = TaskVecEnv("MetaRL/Navigation2D-v0", 2, horizon=5)
    venv.set_options({"task": GoalTask(0.1, 0.2)})
    venv.reset()
    assert venv.get_attr("task") == [GoalTask(0.1, 0.2)] * 2
    with pytest.raises(UserError, match="cannot set"):
        venv.set_attr("horizon", 3)
    with pytest.raises(UserError, match="get_task"):
        venv.env_method("render")
    venv.set_options([{"task": GoalTask(0.1, 0.2)}, {}])
    with pytest.raises(UserError, match="one set of reset options"):
        venv.reset()
    with pytest.raises(UserError, match="SAME_STEP"):
        TaskVecEnv(TaskVectorEnv("MetaRL/Navigation2D-v0", 2))
    assert not any(venv.env_is_wrapped(gym.Wrapper))


def test_envs_package_imports_neither_torch_nor_sb3():
    code = (
        "import sys, gymnasium as gym, metarl.envs; "
        "env = gym.make_vec('MetaRL/Navigation2D-v0', num_envs=2); env.reset(seed=0); "
        "print(sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

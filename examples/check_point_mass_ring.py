"""Check a task distribution of your own: Gymnasium's and SB3's checkers, and the fast engine against the slow.

::

    python examples/check_point_mass_ring.py

Run as a script, Python finds ``point_mass_ring`` next to this file.
"""

from __future__ import annotations

# --8<-- [start:check]
import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
from point_mass_ring import ENV_ID  # importing the module registers MyLab/PointMassRing-v0

from metarl.envs import make_batched


def check(num_tasks: int = 5, episodes_per_task: int = 4) -> None:
    """Raise if the env breaks Gymnasium's contract or its batched engine departs from the single env."""
    env = gym.make(ENV_ID)
    check_env(env.unwrapped)
    try:  # Stable-Baselines3's checker too, when it is installed
        from stable_baselines3.common.env_checker import check_env as sb3_check_env
    except ImportError:
        pass
    else:
        sb3_check_env(env.unwrapped)

    env.reset(seed=0)
    tasks = env.unwrapped.sample_tasks(num_tasks)
    fast = make_batched(ENV_ID, tasks, episodes_per_task, seed=0)
    slow = make_batched(ENV_ID, tasks, episodes_per_task, seed=0, generic=True)  # one env per copy
    np.testing.assert_allclose(fast.reset(), slow.reset(), rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(fast.horizon):  # whole episodes: same seeds and actions, same numbers
        actions = rng.uniform(-1, 1, size=(num_tasks, episodes_per_task, 2)).astype(np.float32)
        obs, reward, terminated, truncated, _ = fast.step(actions)
        slow_obs, slow_reward, slow_terminated, slow_truncated, _ = slow.step(actions)
        np.testing.assert_allclose(obs, slow_obs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(reward, slow_reward, rtol=1e-5, atol=1e-6)
        assert (terminated == slow_terminated).all() and (truncated == slow_truncated).all()
    # --8<-- [end:check]


if __name__ == "__main__":
    check()
    print(f"{ENV_ID}: the checkers pass and the batched engine equals the single env")

"""metarl's task distributions from any Gymnasium library, and from Stable-Baselines3.

::

    python examples/gymnasium_sb3.py --timesteps 100000
"""

from __future__ import annotations

import argparse

# --8<-- [start:gymnasium]
import gymnasium as gym
import numpy as np

import metarl  # noqa: F401  (registers the MetaRL/... ids)
from metarl.envs.navigation import GoalTask
from metarl.envs.wrappers import RandomTaskWrapper


def gymnasium_api() -> None:
    """Tasks through Gymnasium's own API: no metarl call is needed to choose, switch or resample them."""
    env = gym.make("MetaRL/Navigation2D-v0", task={"goal_x": 0.3, "goal_y": -0.1})  # or task=GoalTask(...)
    obs, info = env.reset(seed=0)
    assert info["task"] == GoalTask(0.3, -0.1)
    obs, info = env.reset(options={"task": GoalTask(-0.2, 0.4)})  # switch task at a reset

    resampled = RandomTaskWrapper(gym.make("MetaRL/Navigation2D-v0"), seed=0)  # a new task at every reset
    goals = {resampled.reset()[1]["task"] for _ in range(3)}
    assert len(goals) == 3

    venv = gym.make_vec("MetaRL/Navigation2D-v0", num_envs=64)  # one batched engine, not 64 envs
    obs, info = venv.reset(seed=0)
    obs, reward, terminated, truncated, info = venv.step(np.zeros((64, 2), dtype=np.float32))
    assert obs.shape == (64, 2) and reward.shape == (64,)
    venv.close()
    # --8<-- [end:gymnasium]


# --8<-- [start:sb3]
def sb3_ppo(timesteps: int) -> float:
    """Stable-Baselines3's PPO, unchanged, on the task mixture (extra ``metarl[sb3]``); its mean return."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy

    from metarl.integrations.sb3 import TaskVecEnv

    venv = TaskVecEnv("MetaRL/Navigation2D-v0", num_envs=16)  # a new goal at every reset of each sub-env
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=256, seed=0).learn(timesteps)
    mean_return, _ = evaluate_policy(model, venv, n_eval_episodes=16)
    return float(mean_return)
    # --8<-- [end:sb3]


def main() -> None:
    parser = argparse.ArgumentParser(description="metarl envs through Gymnasium and Stable-Baselines3.")
    parser.add_argument("--timesteps", type=int, default=100_000, help="PPO's env steps")
    args = parser.parse_args()
    gymnasium_api()
    print(f"PPO on the task mixture: mean return {sb3_ppo(args.timesteps):.2f}")


if __name__ == "__main__":
    main()

"""The task API and the batched engines, in a few lines.

::

    python examples/task_api.py
"""

from __future__ import annotations

# --8<-- [start:task_api]
import gymnasium as gym
import numpy as np

import metarl  # registers the MetaRL/... ids


def task_api() -> list:
    """Sample tasks from a distribution, set one, run an episode on it."""
    env = gym.make("MetaRL/Navigation2D-v0")
    env.reset(seed=0)  # seeds env.np_random, which the tasks are drawn from
    tasks = env.unwrapped.sample_tasks(40)  # GoalTask(goal_x=..., goal_y=...), frozen dataclasses
    env.unwrapped.set_task(tasks[0])  # takes effect at the next reset
    obs, info = env.reset(seed=1)
    assert env.unwrapped.get_task() == tasks[0] == info["task"]
    done = False
    while not done:  # truncated after the env's horizon
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
    return tasks
    # --8<-- [end:task_api]


# --8<-- [start:batched]
def batched(tasks: list, episodes_per_task: int = 20) -> np.ndarray:
    """Step every (task, episode) copy at once; returns the summed rewards, shaped (tasks, episodes)."""
    benv = metarl.envs.make_batched("MetaRL/Navigation2D-v0", tasks, episodes_per_task, seed=0)
    obs = benv.reset()  # (tasks, episodes, 2)
    returns = np.zeros(benv.batch_shape)
    for _ in range(benv.horizon):
        actions = np.zeros(benv.batch_shape + (2,), dtype=np.float32)  # a policy would act here
        obs, reward, terminated, truncated, info = benv.step(actions)
        returns += reward  # finished copies get reward 0
    return returns
    # --8<-- [end:batched]


if __name__ == "__main__":
    returns = batched(task_api())
    print(f"40 tasks x 20 episodes standing still: mean return {returns.mean():.2f}")

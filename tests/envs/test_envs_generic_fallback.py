"""A task distribution defined only in this file (no fast engine) works through the generic batched fallback:
same episodes as the single envs, finished copies frozen, seeding and env kwargs honoured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from metarl.envs import GenericBatchedEnv, Task, TaskEnv, check_range, make_batched, register_task_type

TARGET_LOW, TARGET_HIGH = -2.0, 2.0


@register_task_type
@dataclass(frozen=True)
class LineTargetTask(Task):
    """A target position on a line."""

    target: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", check_range("target", self.target, TARGET_LOW, TARGET_HIGH))


class LineWalkEnv(TaskEnv[LineTargetTask]):
    """Walk along a line to a hidden target; noisy start and moves, so seeding matters.

    Task distribution: target ~ U[-2, 2] (``LineTargetTask``). Reward: ``-|x - target|``.
    Terminates within 0.25 of the target; truncated after ``horizon`` steps (default 8).
    """

    metadata = {"render_modes": []}
    task_type = LineTargetTask

    def __init__(self, horizon: int = 8) -> None:
        super().__init__(horizon)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float64)
        self._x = 0.0

    def _sample_task(self, rng: np.random.Generator) -> LineTargetTask:
        return LineTargetTask(target=float(rng.uniform(TARGET_LOW, TARGET_HIGH)))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._x = float(self.np_random.uniform(-0.1, 0.1))
        return np.array([self._x]), {}

    def step(self, action):
        move = float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        self._x += 0.2 * move + 0.05 * float(self.np_random.standard_normal())
        distance = abs(self._x - self.get_task().target)
        return np.array([self._x]), -distance, distance < 0.25, False, {}


def policy(obs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Head for the target: copies with nearby targets finish early, far ones run to the horizon."""
    return np.clip(targets[..., None] - obs, -1.0, 1.0)


TASKS = [LineTargetTask(target=t) for t in (0.3, -1.2, 1.9, -2.0)]
EPISODES = 3


def rollout_batched(benv, seed=None):
    targets = np.broadcast_to(np.array([t.target for t in benv.tasks])[:, None], benv.batch_shape)
    observations, rewards, terminated, truncated, active = [benv.reset(seed=seed)], [], [], [], []
    while not benv.done.all():
        obs, reward, term, trunc, info = benv.step(policy(observations[-1], targets))
        observations.append(obs)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        active.append(info["active"])
    return tuple(np.array(x) for x in (observations, rewards, terminated, truncated, active))


def test_make_batched_uses_the_fallback_and_matches_single_envs():
    benv = make_batched(LineWalkEnv, TASKS, EPISODES, seed=21)
    assert isinstance(benv, GenericBatchedEnv)
    assert benv.batch_shape == (4, 3) and benv.horizon == 8
    observations, rewards, terminated, truncated, _ = rollout_batched(benv)
    assert observations.shape[1:] == (4, 3, 1)

    for i, task in enumerate(TASKS):
        for j in range(EPISODES):
            env = LineWalkEnv()
            env.set_task(task)
            obs, _ = env.reset(seed=21 + i * EPISODES + j)
            assert np.array_equal(obs, observations[0, i, j])
            for t in range(len(rewards)):
                obs, reward, term, trunc, _ = env.step(policy(obs, np.array(task.target)))
                assert np.array_equal(obs, observations[t + 1, i, j])
                assert reward == rewards[t, i, j]
                assert (term, trunc) == (terminated[t, i, j], truncated[t, i, j])
                if term or trunc:
                    break


def test_finished_copies_are_frozen():
    observations, rewards, terminated, truncated, active = rollout_batched(
        make_batched(LineWalkEnv, TASKS, EPISODES, seed=3)
    )
    done = terminated | truncated
    first_done = done.argmax(axis=0)  # step index at which each copy finished
    assert first_done.min() < first_done.max(), "the setup must finish copies at different steps"
    assert terminated[-1].any() and truncated[-1].any()
    for (i, j), end in np.ndenumerate(first_done):
        assert active[: end + 1, i, j].all() and not active[end + 1 :, i, j].any()
        assert np.all(rewards[end + 1 :, i, j] == 0.0)
        assert np.all(observations[end + 2 :, i, j] == observations[end + 1, i, j])
        assert np.all(terminated[end:, i, j] == terminated[end, i, j])
        assert np.all(truncated[end:, i, j] == truncated[end, i, j])


def test_seeding_reproduces_and_continues():
    same_a = rollout_batched(make_batched(LineWalkEnv, TASKS, EPISODES, seed=5))
    same_b = rollout_batched(make_batched(LineWalkEnv, TASKS, EPISODES, seed=5))
    other = rollout_batched(make_batched(LineWalkEnv, TASKS, EPISODES, seed=6))
    assert all(np.array_equal(a, b) for a, b in zip(same_a, same_b, strict=True))
    assert not np.array_equal(same_a[0][0], other[0][0])

    # a second round without a seed continues every copy's stream, like env.reset() on a single env
    benv = make_batched(LineWalkEnv, TASKS, EPISODES, seed=5)
    rollout_batched(benv)
    second = rollout_batched(benv)
    env = LineWalkEnv()
    env.set_task(TASKS[1])
    obs, _ = env.reset(seed=5 + 1 * EPISODES + 2)
    while True:
        obs, _, term, trunc, _ = env.step(policy(obs, np.array(TASKS[1].target)))
        if term or trunc:
            break
    assert np.array_equal(env.reset()[0], second[0][0, 1, 2])
    assert not np.array_equal(second[0][0], same_a[0][0])
    # an explicit seed restarts from it
    assert np.array_equal(rollout_batched(benv, seed=5)[0], same_a[0])


def test_env_kwargs_reach_the_single_envs():
    benv = make_batched(LineWalkEnv, TASKS, 2, seed=0, horizon=4)
    assert benv.horizon == 4 and all(env.unwrapped.horizon == 4 for env in benv.envs)
    observations, *_ = rollout_batched(benv)
    assert len(observations) <= 5


def test_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="target"):
        LineTargetTask(target=3.0)
    with pytest.raises(ValueError, match="LineTargetTask"):
        make_batched(LineWalkEnv, [object()], 1)
    with pytest.raises(TypeError, match="task API"):
        make_batched(lambda: gym.make("CartPole-v1"), TASKS, 1)  # an env without the task API
    with pytest.raises(ValueError, match="metarl envs"):
        make_batched("MetaRL/NoSuchEnv-v0", TASKS, 1)
    benv = make_batched(LineWalkEnv, TASKS, 2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        benv.step(np.zeros((4, 2, 1)))
    benv.reset()
    with pytest.raises(ValueError, match="shape"):
        benv.step(np.zeros((4, 2)))

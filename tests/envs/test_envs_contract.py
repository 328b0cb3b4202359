"""The plug-in contract of a TaskEnv: the base class truncates at the horizon by itself (the batched fallback
agrees), and every mistake a user can make when writing one fails early with a message that says the fix
(the list of docs/custom-envs.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from metarl.envs import Task, TaskEnv, make_batched, register_task_type
from metarl.errors import UserError


@register_task_type
@dataclass(frozen=True)
class CounterTask(Task):
    """A task with one number (the contract does not care what it means)."""

    level: float


class Counter(TaskEnv[CounterTask]):
    """Observes how many steps it took; its own step never truncates: the base class must.

    ``stop_at``: the env's own early truncation, before the horizon (0: none).
    """

    task_type = CounterTask

    def __init__(self, horizon: int = 5, stop_at: int = 0) -> None:
        super().__init__(horizon)
        self.stop_at = stop_at
        self.observation_space = spaces.Box(0.0, np.inf, shape=(1,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float64)
        self._count = 0

    def _sample_task(self, rng: np.random.Generator) -> CounterTask:
        return CounterTask(level=float(rng.uniform()))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._count = 0
        return np.array([0.0]), {}

    def step(self, action):
        self._count += 1
        early = self.stop_at > 0 and self._count >= self.stop_at
        return np.array([float(self._count)]), 1.0, False, early, {}


class LoudCounter(Counter):
    """Overrides ``step`` and calls ``super().step``: still one count per step."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, 2 * reward, terminated, truncated, info


def episode_length(env: gym.Env, seed: int = 0) -> int:
    env.reset(seed=seed)
    for t in range(1, 1000):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            return t
    raise AssertionError("the episode never ended")


@pytest.mark.parametrize("env_class", [Counter, LoudCounter])
def test_a_task_env_truncates_at_its_horizon_under_plain_gymnasium(env_class):
    env = env_class(horizon=7)
    assert episode_length(env) == 7 and env.elapsed_steps == 7
    assert episode_length(env) == 7  # reset starts the count again
    assert episode_length(env_class(horizon=7, stop_at=3)) == 3  # the env may truncate earlier itself


@pytest.mark.parametrize("stop_at", [0, 3])
def test_the_batched_fallback_ends_episodes_where_the_single_env_does(stop_at):
    tasks = [CounterTask(level=0.5), CounterTask(level=0.1)]
    benv = make_batched(lambda: Counter(horizon=6, stop_at=stop_at), tasks, 2, seed=0)
    benv.reset()
    steps = 0
    while not benv.done.all():
        _, _, _, truncated, _ = benv.step(np.zeros((2, 2, 1)))
        steps += 1
    assert steps == episode_length(Counter(horizon=6, stop_at=stop_at)) and truncated.all()


def test_a_task_type_must_be_a_frozen_task_dataclass():
    class NotADataclass(Task):
        level: float

    with pytest.raises(
        UserError, match=r"NotADataclass must be a frozen dataclass: decorate it with @dataclass"
    ):
        register_task_type(NotADataclass)
    with pytest.raises(UserError, match="must be a subclass of metarl.envs.Task"):
        register_task_type(dict)


def test_two_task_types_cannot_share_a_name():
    @register_task_type
    @dataclass(frozen=True)
    class ClashTask(Task):
        level: float

    def other_module_task():
        @dataclass(frozen=True)
        class ClashTask(Task):
            level: float

        return ClashTask

    with pytest.raises(UserError, match="'ClashTask' is already registered .* rename"):
        register_task_type(other_module_task())
    assert register_task_type(ClashTask) is ClashTask  # registering the same class again is harmless


def test_an_unregistered_task_type_fails_when_the_env_class_is_defined():
    @dataclass(frozen=True)
    class ForgottenTask(Task):
        level: float

    with pytest.raises(
        UserError, match="ForgottenTask is not registered: decorate it with @metarl.envs.register_task_type"
    ):

        class ForgetfulEnv(Counter):
            task_type = ForgottenTask


def test_a_task_type_that_is_not_a_task_fails_when_the_env_class_is_defined():
    with pytest.raises(UserError, match=r"WrongEnv.task_type must be a subclass of metarl.envs.Task"):

        class WrongEnv(Counter):
            task_type = float


def test_a_missing_task_type_or_sampler_fails_when_the_env_is_made():
    class NoTaskType(TaskEnv):
        def __init__(self) -> None:
            super().__init__(horizon=5)

    with pytest.raises(
        UserError, match="NoTaskType has no task_type: set the class attribute `task_type = YourTask`"
    ):
        NoTaskType()

    class NoSampler(TaskEnv[CounterTask]):
        task_type = CounterTask

        def __init__(self) -> None:
            super().__init__(horizon=5)

    with pytest.raises(
        UserError, match=r"NoSampler does not implement _sample_task\(self, rng\) -> CounterTask"
    ):
        NoSampler()


def test_forgetting_the_base_init_fails_at_the_first_reset():
    class NoBaseInit(Counter):
        def __init__(self) -> None:
            self.observation_space = spaces.Box(0.0, 1.0, shape=(1,))
            self.action_space = spaces.Box(-1.0, 1.0, shape=(1,))

    with pytest.raises(UserError, match=r"NoBaseInit.__init__ must call super\(\).__init__\(horizon\)"):
        NoBaseInit().reset(seed=0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"horizon": 0}, r"horizon must be an integer in \[1, 1000000\], got 0"),
        ({"horizon": 2.5}, r"horizon must be an integer in \[1, 1000000\], got 2.5"),
    ],
)
def test_a_bad_horizon_is_refused(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        Counter(**kwargs)


def test_an_unsupported_render_mode_is_refused():
    class Quiet(Counter):
        def __init__(self, render_mode=None) -> None:
            TaskEnv.__init__(self, 5, render_mode)

    with pytest.raises(UserError, match=r"Quiet supports render_mode in \[\] \(or None\), got 'rgb_array'"):
        Quiet(render_mode="rgb_array")


def test_a_task_of_another_distribution_is_refused():
    with pytest.raises(UserError, match="Counter expects a CounterTask, got str"):
        Counter().set_task("level 3")


def test_an_env_without_the_task_api_is_refused_by_the_batched_form():
    with pytest.raises(TypeError, match="subclass metarl.envs.TaskEnv"):
        make_batched(lambda: gym.make("CartPole-v1"), [CounterTask(level=0.0)], 1)

"""Trials: ``k`` consecutive episodes of one task, the unit of experience of RL^2 (Duan et al. 2016; Wang et al.
2016) and of any agent that adapts by remembering what it saw.

Within a trial the task stays fixed; the env resets at each episode's end but the trial goes on, so a
recurrent policy that keeps its memory across the boundary can carry what it learned about the task into the
next episode. Each observation is augmented with what the agent needs to learn from its own experience:

``[observation | previous action | previous reward | done flag]``

* the observation, flattened (``Discrete`` observations one-hot);
* the previous action (one-hot for ``Discrete`` actions; ``Box`` actions clipped to the action box), zeros at
  the first step of a trial;
* the previous reward, 0 at the first step of a trial;
* the done flag: 1 on the first observation after an episode ended (and on the trial's last observation),
  else 0.

Two forms with the same numbers (same seeds, tasks and actions: same observations, rewards and flags):

* :class:`TrialWrapper`, a Gymnasium wrapper any RL library can train on (a trial is its episode);
* :class:`BatchedTrials` (:func:`make_batched_trials`), every copy of a batched engine playing one trial, episodes
  back to back through the engine's partial resets, with no Python loop over copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from metarl.envs.base import Task
from metarl.envs.batched import BatchedEnv, EnvSource, make_batched
from metarl.envs.wrappers import RandomTaskWrapper
from metarl.errors import UserError


def _check_episodes_per_trial(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise UserError(f"episodes_per_trial must be an integer >= 1, got {value!r}")
    return int(value)


class TrialLayout:
    """The augmented observation of a trial for a pair of spaces, and its encoding (any leading batch shape).

    Args:
        observation_space: the env's observation space (``Box`` or ``Discrete``).
        action_space: the env's action space (``Box`` or ``Discrete``).

    Attributes:
        space: the ``Box`` of the augmented observations (float32).
        observation_size, action_size: widths of the first two parts.
    """

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        obs_low, obs_high = _part_bounds(observation_space, "observation")
        action_low, action_high = _part_bounds(action_space, "action")
        self.observation_size = obs_low.size
        self.action_size = action_low.size
        flags = np.array([-np.inf, 0.0]), np.array([np.inf, 1.0])  # previous reward, done flag
        low = np.concatenate([obs_low, action_low, flags[0]]).astype(np.float32)
        high = np.concatenate([obs_high, action_high, flags[1]]).astype(np.float32)
        self.space = gym.spaces.Box(low, high, dtype=np.float32)

    def continuous_features(self) -> np.ndarray:
        """Bool mask over the augmented observation: True for the features on a continuous scale (a ``Box``
        observation or action, the previous reward), False for the one-hot encodings of ``Discrete`` spaces and
        the done flag. Standardising a 0/1 indicator by its running std blows a rare value up (an action taken
        1% of the time becomes an input of about 10), so only the continuous features should be standardised."""
        return np.concatenate(
            [
                np.full(self.observation_size, isinstance(self.observation_space, gym.spaces.Box)),
                np.full(self.action_size, isinstance(self.action_space, gym.spaces.Box)),
                [True, False],  # previous reward, done flag
            ]
        )

    def no_action(self, batch_shape: tuple[int, ...] = ()) -> np.ndarray:
        """The "previous action" of a trial's first step: zeros (clipped into a ``Box`` that excludes 0)."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            return np.full(batch_shape, -1, dtype=np.int64)  # encodes as the all-zero one-hot
        zeros = np.zeros(batch_shape + self.action_space.shape)
        return np.clip(zeros, self.action_space.low, self.action_space.high)

    def encode(
        self, obs: Any, action: Any, reward: Any, done: Any, batch_shape: tuple[int, ...] = ()
    ) -> np.ndarray:
        """``[obs | action | reward | done]`` as float32 ``batch_shape + (space size,)``.

        Args:
            obs: observations ``batch_shape + obs_shape``.
            action: the previous actions ``batch_shape + action_shape`` (``Discrete``: indices, -1 for none).
            reward: the previous rewards ``batch_shape``.
            done: the done flags ``batch_shape`` (bool or 0/1).
        """
        parts = [
            _encode_part(self.observation_space, obs, batch_shape, clip=False),
            _encode_part(self.action_space, action, batch_shape, clip=True),
            np.asarray(reward, dtype=np.float64).reshape(batch_shape + (1,)),
            np.asarray(done, dtype=np.float64).reshape(batch_shape + (1,)),
        ]
        return np.concatenate(parts, axis=-1).astype(np.float32)


def _part_bounds(space: gym.spaces.Space, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(space, gym.spaces.Discrete):
        return np.zeros(int(space.n)), np.ones(int(space.n))
    if isinstance(space, gym.spaces.Box):
        return space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
    raise UserError(f"trials need a Box or Discrete {what} space, got {space}")


def _encode_part(space: gym.spaces.Space, value: Any, batch_shape: tuple[int, ...], clip: bool) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        index = np.asarray(value, dtype=np.int64).reshape(batch_shape) - int(space.start)
        valid = (index >= 0) & (index < int(space.n))
        return (np.arange(int(space.n)) == index[..., None]) & valid[..., None]
    values = np.asarray(value, dtype=np.float64).reshape(batch_shape + (-1,))
    if clip:  # the env clips actions outside its box; the agent is shown what the env did
        values = np.clip(values, space.low.reshape(-1), space.high.reshape(-1))
    return values


class TrialWrapper(RandomTaskWrapper):
    """A trial of ``episodes_per_trial`` episodes of one task is one episode of this env.

    ``reset`` starts a trial: a new task (from the env's distribution, or uniformly from ``tasks``;
    ``options["task"]`` chooses it) and the first episode. When an inner episode ends and the trial has
    episodes left, the inner env is reset (same task, its random stream continued) and ``step`` returns the new
    episode's first observation with the done flag set, the ending step's reward, and
    ``terminated = truncated = False``. After the ``k``-th episode the trial ends with that episode's own
    ``terminated`` / ``truncated`` flags. ``info["trial_episode"]`` is the episode (0-based) the step was taken in.

    Seeding: ``reset(seed=s)`` draws the task from :func:`metarl.envs.seeding.task_generator` ``(s)`` and resets the
    inner env with ``s``; its later episodes continue the env's stream. So copy ``(i, j)`` of
    :func:`make_batched_trials` with seed ``s0`` equals this wrapper reset with seed
    ``s0 + i * trials_per_task + j`` and ``options={"task": tasks[i]}``.

    Args:
        env: an env whose ``unwrapped`` is a :class:`~metarl.envs.TaskEnv`.
        episodes_per_trial: ``k``, the episodes of one task in a trial.
        tasks: a fixed list of tasks to draw from (``None``: the env's distribution).
        seed: seeds the task draws until a ``reset(seed=...)`` reseeds them.
    """

    def __init__(
        self,
        env: gym.Env,
        episodes_per_trial: int,
        tasks: Sequence[Task | Mapping[str, Any]] | None = None,
        seed: int | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, episodes_per_trial=episodes_per_trial, tasks=tasks, seed=seed
        )
        super().__init__(env, tasks=tasks, seed=seed)
        self.episodes_per_trial = _check_episodes_per_trial(episodes_per_trial)
        self.layout = TrialLayout(env.observation_space, env.action_space)
        self.observation_space = self.layout.space
        self._episode = 0

    @property
    def trial_episode(self) -> int:
        """The episode of the trial being played (0-based)."""
        return self._episode

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        self._episode = 0
        return self.layout.encode(obs, self.layout.no_action(), 0.0, False), {**info, "trial_episode": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "trial_episode": self._episode}
        ended = bool(terminated or truncated)
        if ended:
            self._episode += 1
            if self._episode < self.episodes_per_trial:
                obs, _ = self.env.reset()
                terminated = truncated = False
        return (
            self.layout.encode(obs, action, reward, ended),
            float(reward),
            bool(terminated),
            bool(truncated),
            info,
        )


class BatchedTrials:
    """Every copy of a batched engine plays one trial of ``episodes_per_trial`` episodes of its row's task.

    A copy whose episode ends is reset by the engine's partial reset (same task, its random stream continued)
    while the others keep running; a copy whose trial is over is frozen like a finished copy of an engine
    (its last observation, reward 0 and the same flags). Arrays are shaped ``(tasks, trials_per_task, ...)``.

    Args:
        engine: the batched env (row ``i``: task ``i``; its ``episodes_per_task`` copies are the task's trials).
        episodes_per_trial: ``k``.

    Attributes:
        layout: the augmented observation (:class:`TrialLayout`); ``observation_space`` is its ``space``.
        horizon: the most steps a trial can take (``k`` x the engine's horizon).
        done: bool ``(tasks, trials)``, the copies whose trial is over.
        episode: int ``(tasks, trials)``, the episodes each copy has finished.
    """

    def __init__(self, engine: BatchedEnv, episodes_per_trial: int) -> None:
        self.engine = engine
        self.episodes_per_trial = _check_episodes_per_trial(episodes_per_trial)
        self.layout = TrialLayout(engine.observation_space, engine.action_space)
        self.observation_space = self.layout.space
        self.action_space = engine.action_space
        self.horizon = self.episodes_per_trial * engine.horizon
        self.done = np.zeros(self.batch_shape, dtype=bool)
        self.episode = np.zeros(self.batch_shape, dtype=np.int64)
        self._terminated = np.zeros(self.batch_shape, dtype=bool)
        self._truncated = np.zeros(self.batch_shape, dtype=bool)
        self._last_obs: np.ndarray | None = None

    @property
    def batch_shape(self) -> tuple[int, int]:
        """``(num_tasks, trials_per_task)``."""
        return self.engine.batch_shape

    @property
    def tasks(self) -> list[Task]:
        return self.engine.tasks

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start a trial in every copy (copy ``(i, j)`` seeded ``seed + i * trials_per_task + j``)."""
        obs = self.engine.reset(seed=seed)
        self.done[:] = False
        self.episode[:] = 0
        self._terminated[:] = False
        self._truncated[:] = False
        shape = self.batch_shape
        self._last_obs = self.layout.encode(
            obs, self.layout.no_action(shape), np.zeros(shape), np.zeros(shape), shape
        )
        return self._last_obs.copy()

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every running trial by one step.

        Returns:
            ``obs (T, E, D)``, ``reward (T, E)``, trial-level ``terminated`` and ``truncated (T, E)`` and
            ``info`` with ``"active"`` (the copies whose trial was running before this step), ``"episode"``
            (the trial episode each copy stepped in) and ``"episode_end"`` (the copies whose episode ended now).
        """
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        shape = self.batch_shape
        active = ~self.done
        obs, reward, terminated, truncated, info = self.engine.step(actions)
        info = dict(info)
        ended = (terminated | truncated) & active
        episode = self.episode.copy()
        self.episode += ended
        trial_over = ended & (self.episode >= self.episodes_per_trial)
        restart = ended & ~trial_over
        if restart.any():
            fresh = self.engine.reset(mask=restart)
            obs = np.where(restart.reshape(shape + (1,) * (obs.ndim - 2)), fresh, obs)
        encoded = self.layout.encode(obs, actions, reward, ended, shape)
        self._last_obs = np.where(active[..., None], encoded, self._last_obs)
        self._terminated |= trial_over & terminated
        self._truncated |= trial_over & truncated
        self.done |= trial_over
        info.update(active=active, episode=episode, episode_end=ended)
        return (
            self._last_obs.copy(),
            np.where(active, reward, 0.0),
            self._terminated.copy(),
            self._truncated.copy(),
            info,
        )

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()


def make_batched_trials(
    env: EnvSource,
    tasks: Sequence[Task],
    episodes_per_trial: int,
    trials_per_task: int = 1,
    seed: int | None = None,
    **env_kwargs: Any,
) -> BatchedTrials:
    """Trials of ``episodes_per_trial`` episodes, ``trials_per_task`` of them for each task, on the env's batched
    engine (:func:`metarl.envs.make_batched`: the fast engine where there is one).

    Args:
        env: a registered id or a callable returning a :class:`~metarl.envs.TaskEnv`.
        tasks: one task per row.
        episodes_per_trial: ``k``, episodes of one task in a trial.
        trials_per_task: trials played in parallel for every task.
        seed: base seed; copy ``(i, j)`` gets ``seed + i * trials_per_task + j``.
        **env_kwargs: constructor arguments of the env.
    """
    episodes_per_trial = _check_episodes_per_trial(episodes_per_trial)
    return BatchedTrials(make_batched(env, tasks, trials_per_task, seed, **env_kwargs), episodes_per_trial)

"""Collects episodes for all tasks x episodes in one batched loop, with one parameter set per task.

Each time step is one call of the batched env and one batched forward of the policy over the stacked
per-task parameters (``torch.baddbmm`` per layer): there is no Python loop over environments or tasks.
Randomness comes only from the explicit seed of the env copies and the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.config import TrainConfig
from metarl.agents.episodes import Episodes
from metarl.agents.policies import MLPPolicy, encode_observations
from metarl.envs import BatchedEnv, Task, TaskEnv, make_batched
from metarl.envs.registration import check_registered
from metarl.errors import TrainingDiverged, UserError

MAX_STEPS_PER_ROUND = 10**8  # env steps of one sampling round (its episodes stay in memory)


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """``gymnasium.make`` of a task distribution, with a one-line :class:`~metarl.errors.UserError` for an
    unknown id, bad kwargs or an env that is not a :class:`~metarl.envs.TaskEnv`."""
    check_registered(env_id)
    try:
        env = gym.make(env_id, **dict(env_kwargs or {}))
    except (TypeError, ValueError) as exc:  # the constructor refused the user's env_kwargs
        raise UserError(f"bad env_kwargs {dict(env_kwargs or {})} for {env_id}: {exc}") from None
    if not isinstance(env.unwrapped, TaskEnv):
        env.close()
        raise UserError(
            f"{env_id} is not a task distribution (a metarl.envs.TaskEnv with sample_tasks/set_task/get_task): "
            "run `metarl envs` for the ones metarl knows"
        )
    return env


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread inside the block (or the decorated function), as many as before after it.

    Sampling's products are small (one step of the batch): torch's OpenMP threads gain nothing there, and while
    they spin between ops they take the cores from the engine's own threads (MuJoCo's physics). A HalfCheetahVel
    round of MAML-TRPO's reference config took 4.2 s with torch on both cores, 2.9 s with one
    (``BENCHMARKS.md``); the learner keeps every thread.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class EnvActions:
    """Maps a policy's actions to the env's: ``Discrete`` indices shifted by the space's ``start``; ``Box`` actions
    in ``[-1, 1]`` mapped linearly onto the action box when ``normalized`` (rllab's normalize), else as they are.

    Args:
        action_space: the env's action space.
        normalized: the policy's Box actions live in ``[-1, 1]`` (``PolicyConfig.normalized_actions``).
        env_id: named in the error for an unbounded box.

    Raises:
        UserError: ``normalized`` for an unbounded action box.
    """

    def __init__(self, action_space: gym.spaces.Space, normalized: bool, env_id: str) -> None:
        self.action_space = action_space
        self._scale: tuple[np.ndarray, np.ndarray] | None = None
        if normalized and isinstance(action_space, gym.spaces.Box):
            self._scale = action_box_scale(
                action_space, env_id, "policy.normalized_actions=true", "set policy.normalized_actions=false"
            )

    def __call__(self, actions: torch.Tensor) -> np.ndarray:
        """The env's actions for the policy's."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            return actions.numpy() + int(self.action_space.start)
        values = actions.numpy()
        if self._scale is not None:
            center, half_range = self._scale
            values = center + values * half_range
        return values.astype(self.action_space.dtype or np.float32)


def action_box_scale(space: gym.spaces.Box, env_id: str, who: str, fix: str) -> tuple[np.ndarray, np.ndarray]:
    """``(center, half_range)`` of a bounded action box: a policy acting in ``[-1, 1]`` per dimension maps onto it
    as ``center + action * half_range`` (rllab's normalize).

    Raises:
        UserError: the box is unbounded (``who`` needs bounds; ``fix`` says what the user can do).
    """
    low, high = space.low, space.high
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise UserError(f"{who} needs a bounded action space, {env_id} has {space}: {fix}")
    return (high + low) / 2.0, (high - low) / 2.0


class BatchedSampler:
    """Rolls out a policy with per-task parameters on the batched form of a task distribution.

    Args:
        env_id: registered id of the task distribution.
        env_kwargs: constructor arguments of the env (e.g. ``{"horizon": 200}``).
        policy: the policy module (its parameters are only used when none are passed).
        episodes_per_task: episodes collected in parallel for every task.
        task_features: whether to append ``env.task_features(task)`` to each observation (oracle policy).
        normalized_actions: the policy's Box actions live in ``[-1, 1]`` and are mapped linearly onto the env's
            action bounds (the env still clips); the episodes keep the policy's own actions. True by default,
            as ``PolicyConfig.normalized_actions``.
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None,
        policy: MLPPolicy,
        episodes_per_task: int,
        task_features: bool = False,
        normalized_actions: bool = True,
    ) -> None:
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.policy = policy
        self.episodes_per_task = int(episodes_per_task)
        self.use_task_features = bool(task_features)
        self.normalized_actions = bool(normalized_actions)
        self.env = make_env(env_id, self.env_kwargs)
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self.env_actions = EnvActions(self.action_space, self.normalized_actions, env_id)
        self._engine: BatchedEnv | None = None

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        policy: MLPPolicy,
        episodes_per_task: int | None = None,
        task_features: bool | None = None,
    ) -> BatchedSampler:
        """The sampler of a run's env and policy settings (``episodes_per_task`` and ``task_features``, the
        oracle's, default to the config's)."""
        return cls(
            config.env,
            config.env_kwargs,
            policy,
            config.episodes_per_task if episodes_per_task is None else episodes_per_task,
            task_features=config.oracle if task_features is None else task_features,
            normalized_actions=config.policy.normalized_actions,
        )

    def check_round_size(self, num_tasks: int) -> None:
        """Refuse a sampling round too large to hold in memory or to finish (a hang, not a run).

        Raises:
            UserError: naming the product and the settings that make it.
        """
        horizon = int(self.env.unwrapped.horizon)
        steps = num_tasks * self.episodes_per_task * horizon
        if steps > MAX_STEPS_PER_ROUND:
            raise UserError(
                f"a sampling round of {num_tasks} tasks x {self.episodes_per_task} episodes x {horizon} steps is "
                f"{steps:.3g} env steps, more than {MAX_STEPS_PER_ROUND:.0e}: lower the tasks, episodes_per_task "
                "or the env's horizon"
            )

    def task_features(self, tasks: Sequence[Task]) -> torch.Tensor:
        """``(T, F)`` float32 task features (the oracle's extra inputs)."""
        features = [self.env.unwrapped.task_features(task) for task in tasks]
        if any(f is None for f in features):
            raise UserError(f"{self.env_id} provides no task features, so it has no oracle policy")
        return torch.as_tensor(np.stack(features), dtype=torch.float32).reshape(len(tasks), -1)

    def encode(self, obs: np.ndarray, features: torch.Tensor | None) -> torch.Tensor:
        """Observations ``(T, E, *obs_shape)`` as the policy's inputs, with the task features appended (oracle)."""
        encoded = encode_observations(self.observation_space, obs)
        if features is None:
            return encoded
        extra = features.unsqueeze(1).expand(encoded.shape[0], encoded.shape[1], features.shape[-1])
        return torch.cat([encoded, extra], dim=-1)

    # Nothing here is differentiated; no_grad is also what gives a tanh policy numpy's kernel (policies.tanh).
    @torch.no_grad()
    def sample(
        self,
        params: Mapping[str, torch.Tensor],
        tasks: Sequence[Task],
        seed: int,
        generator: torch.Generator,
    ) -> Episodes:
        """Run ``episodes_per_task`` episodes of every task with that task's parameters.

        Args:
            params: stacked per-task parameters (leading axis = task), detached or not (no graph is built).
            tasks: one task per row of ``params``.
            seed: base seed of the env copies (copy ``(i, j)`` uses ``seed + i * episodes_per_task + j``).
            generator: source of the action noise.

        Returns:
            The episodes, arrays shaped ``(tasks, episodes_per_task, horizon, ...)``.
        """
        self.check_round_size(len(tasks))
        features = self.task_features(tasks) if self.use_task_features else None
        benv, first_obs = self.engine_for(tasks, seed)
        return self.rollout(benv, first_obs, features, lambda obs, _: self.policy.act(obs, params, generator))

    def engine_for(self, tasks: Sequence[Task], seed: int) -> tuple[BatchedEnv, np.ndarray]:
        """The batched engine of ``tasks``, reset with ``seed`` (copy ``(i, j)`` seeded ``seed + i * E + j``), and
        its first observations.

        One engine serves every round of the same number of tasks: a reset that sets the rows' tasks gives the
        episodes a new engine would (``tests/agents/test_agents_sampler.py``), without building its copies (800
        MuJoCo ``MjData`` for MAML-TRPO's HalfCheetahVel round) and its threads again.
        """
        engine = self._engine
        if engine is None or engine.num_tasks != len(tasks):
            self.release_engine()
            engine = make_batched(
                self.env_id, tasks, self.episodes_per_task, seed=int(seed), **self.env_kwargs
            )
            self._engine = engine
            return engine, engine.reset(seed=int(seed))
        return engine, engine.reset(seed=int(seed), tasks=dict(enumerate(tasks)))

    def release_engine(self) -> None:
        """Close the engine kept for the next round (its threads and copies); the next round builds a new one."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def close(self) -> None:
        """Release everything the sampler holds (here the kept engine; the Ray sampler also stops its actors)."""
        self.release_engine()

    @torch.no_grad()
    @one_torch_thread()
    def rollout(
        self,
        benv: BatchedEnv,
        first_obs: np.ndarray,
        features: torch.Tensor | None,
        act: Callable[[torch.Tensor, int], torch.Tensor],
        min_steps: int = 0,
    ) -> Episodes:
        """Step a freshly reset batched env until every copy has ended (and at least ``min_steps`` steps).

        Args:
            benv: the engine, just reset; ``first_obs`` its observations.
            features: ``(T, F)`` task features appended to the observations (oracle), or ``None``.
            act: ``act(policy_inputs, step) -> actions`` for the whole batch.
            min_steps: keep stepping finished copies (frozen: masked) up to this many steps, so that a slice of
                a round's tasks has the length of the whole round (:class:`~metarl.agents.ray_sampler.RaySampler`).
        """
        raw_obs = first_obs
        observations, actions, rewards, masks, successes = [], [], [], [], []
        for step in range(benv.horizon):
            obs = self.encode(raw_obs, features)
            action = act(obs, step)
            if not bool(torch.isfinite(action).all()):
                raise TrainingDiverged(
                    "the policy's actions are not finite: its parameters diverged (a step size too large?)"
                )
            raw_obs, reward, _, _, info = benv.step(self.env_actions(action))
            observations.append(obs)
            actions.append(action)
            rewards.append(torch.as_tensor(reward, dtype=torch.float32))
            masks.append(torch.as_tensor(info["active"], dtype=torch.float32))
            if "success" in info:  # the env's per-step success flag (Meta-World)
                successes.append(torch.as_tensor(info["success"], dtype=torch.float32))
            if benv.done.all() and step + 1 >= min_steps:
                break
        return Episodes(
            observations=torch.stack(observations, dim=2),
            actions=torch.stack(actions, dim=2),
            rewards=torch.stack(rewards, dim=2),
            mask=torch.stack(masks, dim=2),
            task_feature_size=0 if features is None else int(features.shape[-1]),
            successes=torch.stack(successes, dim=2) if successes else None,
        )

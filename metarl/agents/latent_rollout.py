"""Episodes of a policy conditioned on a task variable z, on the batched engines (PEARL's data collection and
evaluation trials).

Every copy ``(task i, episode j)`` of the batched env acts with its own ``z[i, j]``; one time step is one
policy forward over all copies and one call of the engine, with no Python loop over tasks or copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from metarl.agents.policies import encode_observations
from metarl.agents.sac import TanhGaussianPolicy
from metarl.agents.sampler import action_box_scale
from metarl.envs import Task, make_batched
from metarl.errors import TrainingDiverged


@dataclass
class Transitions:
    """The transitions of ``(tasks, episodes)`` copies over ``steps`` time steps (arrays ``(T, E, H, ...)``).

    ``mask`` marks the steps a copy was running (an episode that terminated early is padded after its end).
    Actions are the policy's, in ``[-1, 1]``; rewards are float64 as the env returned them.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    mask: torch.Tensor

    @property
    def num_steps(self) -> int:
        """Env steps taken (running copies only)."""
        return int(self.mask.sum())

    def returns(self) -> torch.Tensor:
        """``(T, E)`` float64 undiscounted return of each episode."""
        return (self.rewards * self.mask).sum(dim=-1)

    def flat(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The replay-buffer fields ``(T, E * H, width)`` and the ``(T, E * H)`` mask of real transitions."""
        tasks = self.mask.shape[0]
        fields = {
            "obs": self.observations,
            "action": self.actions,
            "reward": self.rewards.unsqueeze(-1),
            "next_obs": self.next_observations,
            "terminal": self.terminals.unsqueeze(-1),
        }
        return {k: v.reshape(tasks, -1, v.shape[-1]) for k, v in fields.items()}, self.mask.reshape(
            tasks, -1
        ) > 0

    def context(self, next_obs: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's inputs ``(T, E * H, width)`` (``(s, a, r[, s'])`` per transition) and their mask."""
        fields, valid = self.flat()
        return context_inputs(fields, next_obs), valid


def context_inputs(fields: Mapping[str, torch.Tensor], next_obs: bool) -> torch.Tensor:
    """``(s, a, r)`` or ``(s, a, r, s')`` concatenated per transition, float32, from replay-buffer fields."""
    parts = [fields["obs"], fields["action"], fields["reward"]] + ([fields["next_obs"]] if next_obs else [])
    return torch.cat([p.to(torch.float32) for p in parts], dim=-1)


class LatentRollout:
    """Rolls out a :class:`~metarl.agents.sac.TanhGaussianPolicy` on ``(observation, z)`` over a batched env.

    Args:
        env_id: registered id of the task distribution.
        env_kwargs: its constructor arguments.
        observation_space: the env's observation space.
        action_space: the env's action space (a bounded Box: actions in ``[-1, 1]`` map onto it).
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Box,
    ) -> None:
        self.env_id = env_id
        self.env_kwargs = dict(env_kwargs or {})
        self.observation_space = observation_space
        self.action_space = action_space
        self.center, self.half_range = action_box_scale(
            action_space, env_id, "PEARL's tanh-Gaussian policy", "give the env bounded actions"
        )

    @torch.no_grad()
    def run(
        self,
        policy: TanhGaussianPolicy,
        tasks: Sequence[Task],
        latents: torch.Tensor,
        seed: int,
        generator: torch.Generator,
        deterministic: bool = False,
        max_steps: int | None = None,
    ) -> Transitions:
        """One episode in each of the ``(len(tasks), E)`` copies, copy ``(i, j)`` acting with ``latents[i, j]``.

        Args:
            policy: the policy; its input is the observation followed by ``z``.
            tasks: one task per row.
            latents: ``(T, E, L)`` task variables.
            seed: base seed of the env copies.
            generator: source of the action noise.
            deterministic: act with ``tanh(mean)`` (evaluation) instead of sampling.
            max_steps: stop the episodes after this many steps (None: the env's horizon); a transition cut off
                this way is not terminal, so its target bootstraps.
        """
        episodes = int(latents.shape[1])
        benv = make_batched(self.env_id, list(tasks), episodes, seed=int(seed), **self.env_kwargs)
        steps: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("obs", "action", "reward", "next", "term", "mask")
        }
        try:
            obs = encode_observations(self.observation_space, benv.reset(seed=int(seed)))
            for _ in range(min(benv.horizon, max_steps or benv.horizon)):
                inputs = torch.cat([obs, latents], dim=-1)
                if deterministic:
                    action = policy.deterministic(inputs)
                else:
                    action = policy.sample(inputs, generator)[0]
                if not bool(torch.isfinite(action).all()):
                    raise TrainingDiverged("the policy's actions are not finite: its parameters diverged")
                env_action = (self.center + action.numpy() * self.half_range).astype(self.action_space.dtype)
                raw_obs, reward, terminated, _, info = benv.step(env_action)
                next_obs = encode_observations(self.observation_space, raw_obs)
                steps["obs"].append(obs)
                steps["action"].append(action)
                steps["reward"].append(torch.as_tensor(np.asarray(reward, dtype=np.float64)))
                steps["next"].append(next_obs)
                steps["term"].append(torch.as_tensor(terminated, dtype=torch.float32))
                steps["mask"].append(torch.as_tensor(info["active"], dtype=torch.float32))
                obs = next_obs
                if benv.done.all():
                    break
        finally:
            benv.close()
        stacked = {k: torch.stack(v, dim=2) for k, v in steps.items()}
        return Transitions(
            observations=stacked["obs"],
            actions=stacked["action"],
            rewards=stacked["reward"],
            next_observations=stacked["next"],
            terminals=stacked["term"],
            mask=stacked["mask"],
        )

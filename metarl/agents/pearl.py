"""PEARL (Rakelly, Zhou, Quillen, Finn, Levine 2019, "Efficient Off-Policy Meta-Reinforcement Learning via
Probabilistic Context Variables"): off-policy meta-RL that adapts by inferring a task variable z.

A context encoder maps a task's transitions to a Gaussian posterior ``q(z | c)`` (:mod:`metarl.agents.context`);
a soft actor-critic conditioned on z (:mod:`metarl.agents.sac`) learns to act given z. On a new task the agent
explores with z from the prior, then acts with z sampled from the posterior of what it has seen (posterior
sampling). One meta-iteration, as oyster's ``MetaRLAlgorithm.train`` (katerakelly/oyster):

1. (first iteration) collect ``initial_episodes`` on every training task with z ~ prior;
2. for ``tasks_per_iteration`` training tasks: empty their encoder buffer, collect ``prior_episodes`` with
   z ~ prior and ``posterior_episodes`` with z ~ q(z | c) into both buffers, then ``extra_posterior_episodes`` with
   z ~ q(z | c) (c drawn from the encoder buffer) into the RL buffer only: all tasks' copies in one batched env;
3. ``train_steps`` gradient steps, each on ``meta_batch_size`` training tasks at once: context from the encoder
   buffer, a batch from the RL buffer; the encoder is trained by the Q loss and ``kl_lambda * KL(q || N(0, I))``.

Example::

    from metarl.agents import PEARL, TrainConfig
    from metarl.training import load_config, shipped_config_dir

    agent = PEARL(load_config(TrainConfig, shipped_config_dir() / "pearl" / "navigation2d.yaml"))
    agent.train("runs/pearl-nav")
    returns = agent.experience_returns(tasks, episodes=3, seed=0)   # (tasks, 3): episodes 1, 2, 3 of a trial
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from metarl.agents.agent import MetaRLAgent
from metarl.agents.config import TrainConfig
from metarl.agents.context import ContextEncoder, kl_to_standard_normal, sample_latent
from metarl.agents.latent_rollout import LatentRollout, Transitions, context_inputs
from metarl.agents.policies import observation_size
from metarl.agents.replay import TaskReplayBuffers
from metarl.agents.sac import QNetwork, TanhGaussianPolicy, policy_loss, q_targets, soft_update, value_targets
from metarl.agents.streams import EVAL_STREAM, INIT_STREAM, TRAIN_STREAM, stream_rng, torch_generator
from metarl.envs import Task, sample_tasks
from metarl.errors import UserError

TRAIN_TASKS_INDEX = 1  # (seed, INIT_STREAM, 1) draws the fixed training tasks; index 0 the initial weights
TRIAL_INDEX = 1  # (seed, EVAL_STREAM, 1) drives experience_returns; index 0 draws the held-out tasks


@contextlib.contextmanager
def frozen(*modules: torch.nn.Module) -> Iterator[None]:
    """Within the block the modules' parameters take no gradient (gradients still flow through them)."""
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class PEARL(MetaRLAgent):
    """Probabilistic embeddings for actor-critic RL (the ``pearl:`` config section; ``meta_batch_size`` tasks per
    gradient step, ``gamma`` the discount).

    Args:
        config: the run configuration (``algo`` must be ``"pearl"``).

    Raises:
        UserError: the env's actions are not a bounded Box (PEARL's policy is a tanh-Gaussian).
    """

    algo = "pearl"

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config.pearl
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise UserError(f"PEARL needs continuous (Box) actions; {self.config.env} has {space}")
        self.rollout = LatentRollout(
            self.config.env, self.config.env_kwargs, self.env.observation_space, space
        )
        obs_size = observation_size(self.env.observation_space)
        action_size = int(np.prod(space.shape))
        latent = cfg.latent_size
        context_size = obs_size + action_size + 1 + (obs_size if cfg.context_next_obs else 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(stream_rng(self.config.seed, INIT_STREAM).integers(2**62)))
            self.encoder = ContextEncoder(context_size, cfg.encoder_hidden_sizes, latent)
            self.policy = TanhGaussianPolicy(obs_size + latent, cfg.hidden_sizes, action_size)
            self.q1 = QNetwork(obs_size + action_size + latent, cfg.hidden_sizes)
            self.q2 = QNetwork(obs_size + action_size + latent, cfg.hidden_sizes)
            self.value = QNetwork(obs_size + latent, cfg.hidden_sizes)
        self.target_value = QNetwork(obs_size + latent, cfg.hidden_sizes)
        self.target_value.load_state_dict(self.value.state_dict())
        adam = torch.optim.Adam
        self.optimizers = {
            "policy": adam(self.policy.parameters(), lr=cfg.lr),
            "q": adam([*self.q1.parameters(), *self.q2.parameters()], lr=cfg.lr),
            "value": adam(self.value.parameters(), lr=cfg.lr),
            "encoder": adam(self.encoder.parameters(), lr=cfg.lr),
        }
        tasks_seed = int(stream_rng(self.config.seed, INIT_STREAM, TRAIN_TASKS_INDEX).integers(2**31))
        self.train_tasks: list[Task] = sample_tasks(self.env, cfg.train_tasks, tasks_seed)
        widths = {"obs": obs_size, "action": action_size, "reward": 1, "next_obs": obs_size, "terminal": 1}
        self.rl_buffer = TaskReplayBuffers(cfg.train_tasks, widths, cfg.replay_buffer_size)
        self.encoder_buffer = TaskReplayBuffers(cfg.train_tasks, widths, cfg.replay_buffer_size)
        self.env_steps = 0  # training env steps so far (the trials logged each iteration not included)
        self.updates = 0

    # --- one meta-iteration ------------------------------------------------------------------------------
    def meta_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config.pearl
        rng = stream_rng(self.config.seed, TRAIN_STREAM, iteration)
        generator = torch_generator(rng)
        tick = time.perf_counter()
        steps_before = self.env_steps
        if iteration == 0:
            everything = torch.arange(cfg.train_tasks)
            self._collect(
                everything, self._prior(everything, cfg.initial_episodes, generator), rng, generator
            )
        rows = torch.as_tensor(np.sort(rng.choice(cfg.train_tasks, cfg.tasks_per_iteration, replace=False)))
        self.encoder_buffer.clear(rows)
        if cfg.prior_episodes:
            self._collect(rows, self._prior(rows, cfg.prior_episodes, generator), rng, generator)
        for k in range(cfg.posterior_episodes):  # one at a time: each refines the next one's posterior
            latents = self._prior(rows, 1, generator) if k == 0 else self._posterior(rows, 1, generator)
            self._collect(rows, latents, rng, generator)
        if cfg.extra_posterior_episodes:  # the encoder buffer does not change here: all episodes at once
            latents = self._posterior(rows, cfg.extra_posterior_episodes, generator)
            # oyster starts each collection from the prior: the first episode's z is a prior draw
            latents[:, 0] = self._prior(rows, 1, generator)[:, 0]
            self._collect(rows, latents, rng, generator, encoder_buffer=False)
        sampling = time.perf_counter() - tick
        tick = time.perf_counter()
        meta_batches = torch.randint(
            cfg.train_tasks, (cfg.train_steps, self.config.meta_batch_size), generator=generator
        )
        sums: dict[str, float] = {}
        for indices in meta_batches:
            for key, value in self._update(indices, generator).items():
                sums[key] = sums.get(key, 0.0) + value
        training = time.perf_counter() - tick
        metrics = {key: total / cfg.train_steps for key, total in sums.items()}
        if cfg.logged_trial_episodes:
            trial = self.experience_returns(
                [self.train_tasks[int(r)] for r in rows], cfg.logged_trial_episodes, int(rng.integers(2**31))
            )
            for j, value in enumerate(trial.mean(axis=0), start=1):
                metrics[f"meta/return_episode{j}"] = float(value)
        metrics.update(
            {
                "env_steps": self.env_steps - steps_before,
                "charts/env_steps_total": self.env_steps,
                "charts/seconds_sampling": sampling,
                "charts/seconds_per_1000_updates": 1000.0 * training / cfg.train_steps,
            }
        )
        return metrics

    def _prior(self, rows: torch.Tensor, episodes: int, generator: torch.Generator) -> torch.Tensor:
        """``(R, episodes, L)`` draws of z from the prior N(0, I)."""
        return torch.randn(len(rows), episodes, self.config.pearl.latent_size, generator=generator)

    @torch.no_grad()
    def _posterior(self, rows: torch.Tensor, episodes: int, generator: torch.Generator) -> torch.Tensor:
        """``(R, episodes, L)``: for each episode a fresh context batch from the encoder buffer, and z from its
        posterior (oyster re-infers q(z | c) from a new context sample after every trajectory)."""
        cfg = self.config.pearl
        repeated = rows.repeat_interleave(episodes)
        context = context_inputs(
            self.encoder_buffer.sample(repeated, cfg.context_batch_size, generator), cfg.context_next_obs
        )
        mean, variance = self.encoder(context)
        return sample_latent(mean, variance, generator).reshape(len(rows), episodes, -1)

    def _collect(
        self,
        rows: torch.Tensor,
        latents: torch.Tensor,
        rng: np.random.Generator,
        generator: torch.Generator,
        encoder_buffer: bool = True,
    ) -> Transitions:
        """Play one episode per ``latents[i, j]`` on training task ``rows[i]`` (at most ``max_path_length`` steps)
        and store the transitions."""
        tasks = [self.train_tasks[int(r)] for r in rows]
        transitions = self.rollout.run(
            self.policy,
            tasks,
            latents,
            int(rng.integers(2**31)),
            generator,
            max_steps=self.config.pearl.max_path_length,
        )
        fields, valid = transitions.flat()
        self.rl_buffer.add(rows, fields, valid)
        if encoder_buffer:
            self.encoder_buffer.add(rows, fields, valid)
        self.env_steps += transitions.num_steps
        return transitions

    def _update(self, indices: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """One gradient step of encoder, critics, value and policy on the tasks ``indices`` (oyster's
        ``_take_step``, all tasks in one batch)."""
        cfg = self.config.pearl
        context = context_inputs(
            self.encoder_buffer.sample(indices, cfg.context_batch_size, generator), cfg.context_next_obs
        )
        batch = self.rl_buffer.sample(indices, cfg.batch_size, generator)
        mean, variance = self.encoder(context)
        z = sample_latent(mean, variance, generator)  # (T, L)
        z = z.unsqueeze(1).expand(-1, cfg.batch_size, -1).reshape(-1, z.shape[-1])
        obs, actions = batch["obs"].flatten(0, 1), batch["action"].flatten(0, 1)
        next_obs = batch["next_obs"].flatten(0, 1)
        rewards, terminals = batch["reward"].flatten(), batch["terminal"].flatten()
        free_z = z.detach()  # the encoder learns only through the Q loss (and the KL)

        # critics and encoder
        q1_pred, q2_pred = self.q1(obs, actions, z), self.q2(obs, actions, z)
        with torch.no_grad():
            targets = q_targets(
                rewards, terminals, self.target_value(next_obs, z), cfg.reward_scale, self.config.gamma
            )
        kl = kl_to_standard_normal(mean, variance).sum()
        q_loss = F.mse_loss(q1_pred, targets) + F.mse_loss(q2_pred, targets)
        self._step(("q", "encoder"), cfg.kl_lambda * kl + q_loss)

        # value and policy, against the updated critics (as oyster); their parameters are disjoint, so one
        # backward serves both, and the critics' weights need no gradient here (only the actions do)
        new_actions, log_probs, action_mean, action_log_std = self.policy.sample(
            torch.cat([obs, free_z], -1), generator
        )
        with frozen(self.q1, self.q2):
            min_q = torch.min(self.q1(obs, new_actions, free_z), self.q2(obs, new_actions, free_z))
        value_loss = F.mse_loss(self.value(obs, free_z), value_targets(min_q, log_probs).detach())
        loss = policy_loss(log_probs, min_q, action_mean, action_log_std, cfg.policy_regularization)
        self._step(("value", "policy"), value_loss + loss)
        soft_update(self.value, self.target_value, cfg.soft_target_tau)
        self.updates += 1
        return {
            "losses/q": q_loss.item(),
            "losses/value": value_loss.item(),
            "losses/policy": loss.item(),
            "losses/kl": kl.item() / len(indices),
            "meta/z_variance": variance.mean().item(),
        }

    def _step(self, names: Sequence[str], loss: torch.Tensor) -> None:
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        for name in names:
            self.optimizers[name].step()

    # --- evaluation ----------------------------------------------------------------------------------------
    experience_episodes = 3
    """Episodes the evaluation plays on each held-out task by default (the first from the prior, then posteriors
    of the growing context)."""

    @torch.no_grad()
    def experience_returns(self, tasks: list[Task], episodes: int, seed: int) -> np.ndarray:
        """``(len(tasks), episodes)`` float64: the return of episode ``j`` of a trial on each task, acting with
        z sampled from the prior (``j = 0``) or from the posterior of the trial's episodes ``0..j-1`` (all their
        transitions), with deterministic actions (oyster's evaluation). No learning; all tasks at once."""
        cfg = self.config.pearl
        rng = stream_rng(seed, EVAL_STREAM, TRIAL_INDEX)
        generator = torch_generator(rng)
        returns = np.zeros((len(tasks), int(episodes)))
        contexts: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        for j in range(int(episodes)):
            if j == 0:
                z = torch.randn(len(tasks), 1, cfg.latent_size, generator=generator)
            else:
                mean, variance = self.encoder(torch.cat(contexts, dim=1), torch.cat(masks, dim=1))
                z = sample_latent(mean, variance, generator).unsqueeze(1)
            transitions = self.rollout.run(
                self.policy, tasks, z, int(rng.integers(2**31)), generator, deterministic=True
            )
            returns[:, j] = transitions.returns()[:, 0].numpy()
            context, mask = transitions.context(cfg.context_next_obs)
            contexts.append(context)
            masks.append(mask.to(torch.float32))
        return returns

    def progress_postfix(self, scalars: Mapping[str, float]) -> dict[str, float]:
        """Returns of the logged trial's episodes, env steps so far and seconds per iteration."""
        shown = {
            k.removeprefix("meta/return_"): v
            for k, v in scalars.items()
            if k.startswith("meta/return_episode")
        }
        shown["steps"] = scalars.get("charts/env_steps_total", float("nan"))
        shown["s/it"] = scalars["charts/seconds_per_iteration"]
        return shown

    # --- state ---------------------------------------------------------------------------------------------
    def _networks(self) -> dict[str, torch.nn.Module]:
        return {
            "policy": self.policy,
            "encoder": self.encoder,
            "q1": self.q1,
            "q2": self.q2,
            "value": self.value,
            "target_value": self.target_value,
        }

    def trained_parameters(self) -> list[torch.Tensor]:
        return [p for net in self._networks().values() for p in net.parameters()]

    def algorithm_state(self) -> dict[str, Any]:
        """Networks, optimizers, both replay buffers and counters; each iteration draws its randomness from
        ``(seed, iteration)``, so no RNG state is needed to continue exactly."""
        return {
            "algo": self.algo,
            **{name: net.state_dict() for name, net in self._networks().items()},
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "rl_buffer": self.rl_buffer.state_dict(),
            "encoder_buffer": self.encoder_buffer.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`algorithm_state` (the config must describe the same networks and tasks)."""
        self.check_algorithm_state(state)
        try:
            for name, net in self._networks().items():
                net.load_state_dict(state[name])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
        except (RuntimeError, TypeError, KeyError, ValueError) as exc:
            raise UserError(f"checkpoint does not match the configured networks: {exc}") from None
        self.rl_buffer.load_state_dict(state["rl_buffer"])
        self.encoder_buffer.load_state_dict(state["encoder_buffer"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])

"""Functional MLP policies whose parameters can be batched over tasks.

A policy is an ordinary ``nn.Module`` (its parameters are the meta-parameters), but it is always run
through :meth:`MLPPolicy.distribution` with an explicit parameter dict. The dict may hold one parameter set
(``weight`` shaped ``(out, in)``) or one set per task stacked on a leading axis (``(tasks, out, in)``); the
batched form runs every task's network in one ``torch.baddbmm`` per layer, which is what lets the sampler and
the losses treat 20 or 40 tasks with no Python loop over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from metarl.core import Params
from metarl.errors import UserError


def numpy_tanh(z: torch.Tensor) -> torch.Tensor:
    """``tanh(z)`` by numpy's vectorised kernel (within 2 ulp of ``torch.tanh``, and faster on CPUs).

    Only for a CPU tensor that neither autograd nor a ``torch.func`` transform tracks: on any other tensor
    ``Tensor.numpy`` raises, so a misuse fails loudly instead of losing a gradient.
    """
    return torch.from_numpy(np.tanh(z.numpy()))


def tanh(z: torch.Tensor) -> torch.Tensor:
    """The policies' tanh activation: :func:`numpy_tanh` while gradients are off, else ``torch.tanh``.

    Code that evaluates a policy without building a graph asks for the numpy kernel by running under
    ``torch.no_grad()`` (the sampler's rollouts, a line search's trial steps); everything autograd or
    ``torch.func`` differentiates takes ``torch.tanh``. ``BENCHMARKS.md`` has what the kernel buys.
    """
    if torch.is_grad_enabled() or z.requires_grad or z.device.type != "cpu":
        return torch.tanh(z)
    return numpy_tanh(z)


ACTIVATIONS = {"tanh": tanh, "relu": torch.relu}


def task_slice(params: Mapping[str, torch.Tensor], index: int) -> Params:
    """The parameters of task ``index`` from a stacked parameter dict."""
    return {name: p[index] for name, p in params.items()}


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    if weight.dim() == 2:
        return F.linear(x, weight, bias)
    # Per-task weights: x (T, N, in), weight (T, out, in), bias (T, out) -> (T, N, out).
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class MLPPolicy(nn.Module):
    """Base class: an MLP body mapping observations to distribution parameters.

    Args:
        input_dim: size of the (encoded) observation.
        output_dim: size of the network's output.
        hidden_sizes: widths of the hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
    """

    def __init__(self, input_dim: int, output_dim: int, hidden_sizes: Sequence[int], activation: str) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise UserError(f"policy activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if any(int(h) < 1 for h in hidden_sizes):
            raise UserError(f"policy hidden sizes must be positive, got {list(hidden_sizes)}")
        sizes = [int(input_dim), *(int(h) for h in hidden_sizes), int(output_dim)]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.activation_name = activation
        for layer in self.layers:  # as in the MAML-RL references
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def params(self) -> Params:
        """The meta-parameters as a ``{name: tensor}`` dict (the module's own tensors)."""
        return dict(self.named_parameters())

    def _body(self, obs: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        batched = params["layers.0.weight"].dim() == 3
        x = obs
        if batched:
            num_tasks = params["layers.0.weight"].shape[0]
            if obs.shape[0] != num_tasks:
                raise ValueError(f"observations for {obs.shape[0]} tasks but parameters for {num_tasks}")
            x = obs.reshape(num_tasks, -1, obs.shape[-1])
        act = ACTIVATIONS[self.activation_name]
        last = len(self.layers) - 1
        for i in range(len(self.layers)):
            x = _linear(x, params[f"layers.{i}.weight"], params[f"layers.{i}.bias"])
            if i < last:
                x = act(x)
        return x.reshape(*obs.shape[:-1], x.shape[-1]) if batched else x

    def distribution_parameters(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        """The tensors that define the action distribution at ``obs`` (Gaussian: mean, log-std; categorical: logits)."""
        raise NotImplementedError

    def distribution_from(self, parameters: tuple[torch.Tensor, ...]) -> Distribution:
        """The distribution defined by :meth:`distribution_parameters`."""
        raise NotImplementedError

    def kl(self, old: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``KL(old || new)`` per sample from distribution parameters, in closed form.

        Written with plain tensor ops (no cached properties of ``torch.distributions``), so that it can be
        used inside ``torch.func`` transforms with ``old`` computed outside them.
        """
        raise NotImplementedError

    def kl_hessian_product(
        self, parameters: tuple[torch.Tensor, ...], tangents: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        """Per sample, the Hessian of ``KL(old || new)`` with respect to ``new`` at ``new = old = parameters``,
        applied to ``tangents`` (the Fisher information in distribution-parameter space).

        This default differentiates :meth:`kl` (forward over reverse); subclasses give the closed form.
        """
        kl_gradient = torch.func.grad(lambda new: self.kl(parameters, new).sum())
        return torch.func.jvp(kl_gradient, (parameters,), (tangents,))[1]

    def distribution(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None
    ) -> Distribution:
        """The action distribution at ``obs`` (``(..., obs_dim)``; ``(tasks, ..., obs_dim)`` for stacked params)."""
        params = self.params() if params is None else params
        return self.distribution_from(self.distribution_parameters(obs, params))

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        """Draw actions from ``dist`` with an explicit generator (reproducible sampling)."""
        raise NotImplementedError

    def act(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        """Actions drawn at ``obs`` with ``params`` (what the sampler calls at every step)."""
        return self.sample(self.distribution(obs, params), generator)

    def action_noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """The random numbers :meth:`act` draws from ``generator`` for observations of ``batch_shape``, shaped
        ``(*batch_shape, ...)``: a distributed sampler draws a round's noise once and ships each worker its
        tasks' rows, and :meth:`act_with_noise` on those rows gives exactly :meth:`act`'s actions."""
        raise NotImplementedError

    def act_with_noise(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor], noise: torch.Tensor
    ) -> torch.Tensor:
        """The actions :meth:`act` takes at ``obs`` when its generator yields ``noise`` (:meth:`action_noise`)."""
        raise NotImplementedError


class GaussianMLPPolicy(MLPPolicy):
    """Diagonal Gaussian policy for ``Box`` actions: MLP mean, learned state-independent log-std.

    Args:
        input_dim: size of the observation.
        action_dim: size of the action.
        hidden_sizes: widths of the hidden layers (MAML uses 100x100 on Navigation2D, 64x64 is our default).
        activation: ``"tanh"`` (default) or ``"relu"``.
        init_std: initial standard deviation of every action dimension.
        min_std: floor of the standard deviation (the log-std parameter is clamped; its gradient is zero
            below the floor), as ``min_log_std`` in pytorch-maml-rl and ``min_std`` in garage.
    """

    def __init__(
        self,
        input_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_std: float = 1.0,
        min_std: float = 1e-6,
    ) -> None:
        super().__init__(input_dim, action_dim, hidden_sizes, activation)
        if not init_std > 0 or not 0 < min_std <= init_std:
            raise UserError(
                f"policy needs 0 < min_std <= init_std, got min_std={min_std}, init_std={init_std}"
            )
        self.log_std = nn.Parameter(torch.full((int(action_dim),), math.log(init_std)))
        self.min_log_std = math.log(min_std)

    def distribution_parameters(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        mean = self._body(obs, params)
        return mean, self._broadcastable_log_std(params, mean).expand_as(mean)

    def _broadcastable_log_std(self, params: Mapping[str, torch.Tensor], mean: torch.Tensor) -> torch.Tensor:
        """The floored log-std, shaped to broadcast against ``mean`` (per task: ``(T, A) -> (T, 1, ..., 1, A)``)."""
        log_std = params["log_std"].clamp_min(self.min_log_std)
        if log_std.dim() == 2:
            log_std = log_std.reshape(log_std.shape[0], *([1] * (mean.dim() - 2)), log_std.shape[1])
        return log_std

    def act(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        # The same draws as sample(distribution(...)), without building a distribution at every step.
        mean = self._body(obs, params)
        return self._draw(mean, torch.exp(self._broadcastable_log_std(params, mean)), generator)

    @staticmethod
    def _draw(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        return mean + std * noise

    def action_noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        # _draw's standard normals (policy outputs are float32)
        return torch.randn(
            (*batch_shape, self.layers[-1].out_features), generator=generator, dtype=torch.float32
        )

    def act_with_noise(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor], noise: torch.Tensor
    ) -> torch.Tensor:
        mean = self._body(obs, params)
        return mean + torch.exp(self._broadcastable_log_std(params, mean)) * noise

    def distribution_from(self, parameters: tuple[torch.Tensor, ...]) -> Distribution:
        mean, log_std = parameters
        return Independent(Normal(mean, torch.exp(log_std), validate_args=False), 1, validate_args=False)

    def kl(self, old: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (mean_old, log_std_old), (mean_new, log_std_new) = old, new
        var_ratio = torch.exp(2.0 * (log_std_old - log_std_new))
        mahalanobis = (mean_old - mean_new) ** 2 * torch.exp(-2.0 * log_std_new)
        return (log_std_new - log_std_old + 0.5 * (var_ratio + mahalanobis) - 0.5).sum(-1)

    def kl_hessian_product(
        self, parameters: tuple[torch.Tensor, ...], tangents: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        # d2 KL / d mean2 = 1 / sigma^2, d2 KL / d log_std2 = 2, no cross term at new = old.
        (_, log_std), (mean_tangent, log_std_tangent) = parameters, tangents
        return mean_tangent * torch.exp(-2.0 * log_std), 2.0 * log_std_tangent

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        base = dist.base_dist
        return self._draw(base.loc, base.scale, generator)


class CategoricalMLPPolicy(MLPPolicy):
    """Categorical policy for ``Discrete`` actions: the MLP outputs the logits.

    Args:
        input_dim: size of the observation.
        num_actions: number of discrete actions.
        hidden_sizes: widths of the hidden layers (32x32 for the bandits and tabular MDPs).
        activation: ``"relu"`` or ``"tanh"``.
    """

    def __init__(
        self,
        input_dim: int,
        num_actions: int,
        hidden_sizes: Sequence[int] = (32, 32),
        activation: str = "relu",
    ) -> None:
        super().__init__(input_dim, num_actions, hidden_sizes, activation)

    def distribution_parameters(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ...]:
        return (self._body(obs, params),)

    def distribution_from(self, parameters: tuple[torch.Tensor, ...]) -> Distribution:
        return Categorical(logits=parameters[0], validate_args=False)

    def kl(self, old: tuple[torch.Tensor, ...], new: tuple[torch.Tensor, ...]) -> torch.Tensor:
        log_p_old = torch.log_softmax(old[0], dim=-1)
        log_p_new = torch.log_softmax(new[0], dim=-1)
        return (torch.exp(log_p_old) * (log_p_old - log_p_new)).sum(-1)

    def kl_hessian_product(
        self, parameters: tuple[torch.Tensor, ...], tangents: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        # d2 KL / d logits2 = diag(p) - p p^T at new = old.
        probs = torch.softmax(parameters[0], dim=-1)
        tangent = tangents[0]
        return (probs * (tangent - (probs * tangent).sum(-1, keepdim=True)),)

    def sample(self, dist: Distribution, generator: torch.Generator) -> torch.Tensor:
        probs = dist.probs.reshape(-1, dist.probs.shape[-1])
        actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return actions.reshape(dist.probs.shape[:-1])

    # torch.multinomial draws one sample as argmax(p / q) with q ~ Exp(1) of p's shape (the Gumbel-max trick,
    # ATen's Distributions.cpp); tests/agents/test_agents_ray_sampler.py checks the two agree bit for bit.
    def action_noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        rows = math.prod(batch_shape)
        noise = torch.empty((rows, self.layers[-1].out_features), dtype=torch.float32).exponential_(
            1, generator=generator
        )
        return noise.reshape(*batch_shape, self.layers[-1].out_features)

    def act_with_noise(
        self, obs: torch.Tensor, params: Mapping[str, torch.Tensor], noise: torch.Tensor
    ) -> torch.Tensor:
        probs = self.distribution(obs, params).probs
        return torch.argmax(probs / noise, dim=-1)


def observation_size(space: gym.spaces.Space) -> int:
    """Input size of the policy for an observation space (``Discrete`` observations are one-hot encoded)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise UserError(f"observation space {space} is not supported: use a Box or Discrete observation space")


def encode_observations(space: gym.spaces.Space, obs: np.ndarray, batch_dims: int = 2) -> torch.Tensor:
    """Observations from a batched env as a float32 tensor ``(*batch, obs_size)``."""
    if isinstance(space, gym.spaces.Discrete):
        index = torch.as_tensor(np.asarray(obs, dtype=np.int64) - int(space.start))
        return F.one_hot(index, int(space.n)).to(torch.float32)
    array = np.asarray(obs, dtype=np.float32)
    return torch.from_numpy(array.reshape(array.shape[:batch_dims] + (-1,)))


def make_policy(
    observation_space: gym.spaces.Space,
    action_space: gym.spaces.Space,
    hidden_sizes: Sequence[int],
    activation: str,
    init_std: float = 1.0,
    extra_inputs: int = 0,
    min_std: float = 1e-6,
) -> MLPPolicy:
    """The policy for a pair of spaces: Gaussian for ``Box`` actions, categorical for ``Discrete`` ones.

    Args:
        observation_space: the env's observation space (Box or Discrete).
        action_space: the env's action space (Box or Discrete).
        hidden_sizes: widths of the hidden layers.
        activation: ``"tanh"`` or ``"relu"``.
        init_std: initial std of a Gaussian policy.
        extra_inputs: inputs appended to the observation (the task features of an oracle policy).
        min_std: floor of a Gaussian policy's std.
    """
    input_dim = observation_size(observation_space) + int(extra_inputs)
    if isinstance(action_space, gym.spaces.Box):
        return GaussianMLPPolicy(
            input_dim, int(np.prod(action_space.shape)), hidden_sizes, activation, init_std, min_std
        )
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalMLPPolicy(input_dim, int(action_space.n), hidden_sizes, activation)
    raise UserError(f"action space {action_space} is not supported: use a Box or Discrete action space")

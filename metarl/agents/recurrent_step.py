"""One step of RL^2's recurrent actor-critic for a batch of trials in one compiled call: the sampler's inner loop.

While sampling, the policy runs one time step at a time for tens of trials. Through torch, that step (input
standardisation, two GRU cells, the action head, the value head, drawing the actions and their log-probabilities)
is a few dozen small tensor operations, about 0.5 ms of dispatch for a few microseconds of arithmetic: most of a
Navigation2D round's sampling time. :class:`RecurrentStep` snapshots the weights into numpy arrays once per round
and runs the standardisation, the GRU cells and both linear heads in one numba-compiled function (the cell
equations and the tanh/sigmoid of :mod:`metarl.agents.fused_gru`, so the states equal those of the whole-trial
recurrence that the PPO update reruns, to float32 rounding); the actions are drawn from pre-drawn noise as
:meth:`metarl.agents.policies.MLPPolicy.act_with_noise` draws them.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from metarl.agents.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.agents.recurrent import OBSERVATION_CLIP, RecurrentActorCritic
from metarl.fast_math import fast_sigmoid, fast_tanh

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


@numba.njit(cache=True, fastmath=True, error_model="numpy")
def _step(
    obs,
    mean,
    std,
    mask,
    clip,
    h,
    w_ih_t,
    b_i,
    w_hh_t,
    b_hn,
    h_out,
    head_w_t,
    head_b,
    head_out,
    value_w,
    value_b,
    values,
):  # pragma: no cover - compiled
    """``obs (B, D)`` standardised where ``mask`` (clipped to ``+-clip``); every GRU ``g`` steps from ``h[g]``
    (``(G, B, H)``) into ``h_out[g]`` with ``w_ih_t (G, D, 3H)``, ``w_hh_t (G, H, 3H)``, ``b_i (G, 3H)`` (input
    biases plus the hidden biases of the r and z gates) and ``b_hn (G, H)``; ``head_out (B, A)`` receives the
    action head's output on the first GRU's state, ``values (B,)`` the value head's on the last one's."""
    batch, features = obs.shape
    num_grus, _, hidden = h.shape
    x = np.empty_like(obs)
    for b in range(batch):
        for d in range(features):
            v = obs[b, d]
            if mask[d]:
                v = (v - mean[d]) / std[d]
                v = clip if v > clip else (-clip if v < -clip else v)
            x[b, d] = v
    for g in range(num_grus):
        gi = np.dot(x, w_ih_t[g])
        gh = np.dot(h[g], w_hh_t[g])
        for b in range(batch):
            for j in range(hidden):
                r = fast_sigmoid(gi[b, j] + b_i[g, j] + gh[b, j])
                z = fast_sigmoid(gi[b, hidden + j] + b_i[g, hidden + j] + gh[b, hidden + j])
                n = fast_tanh(
                    gi[b, 2 * hidden + j] + b_i[g, 2 * hidden + j] + r * (gh[b, 2 * hidden + j] + b_hn[g, j])
                )
                h_out[g, b, j] = n + z * (h[g, b, j] - n)
    head_out[:] = np.dot(h_out[0], head_w_t) + head_b
    values[:] = np.dot(h_out[num_grus - 1], value_w) + value_b


def _array(tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().numpy(), dtype=np.float32)


class RecurrentStep:
    """A :class:`~metarl.agents.recurrent.RecurrentActorCritic`'s weights, snapshotted for one round of sampling.

    ``step(obs, state, noise)`` takes the augmented observations ``(B, D)``, the GRU states ``(G, B, H)`` and the
    round's noise for this step (``policy.head.action_noise((B,), generator)``: standard normals ``(B, A)`` for
    a Gaussian head, exponentials ``(B, n)`` for a categorical one) and returns numpy arrays: the actions
    (``(B, A)`` float32 or ``(B,)`` int64), their log-probabilities ``(B,)``, the values ``(B,)`` and the new
    states ``(G, B, H)``. ``action_shape`` and ``action_dtype`` describe one trial's action. The weights are
    copied: build a new step after the policy changes. Call it under :func:`metarl.fast_math.one_blas_thread`
    (its products are tiny; BLAS threads would only spin).
    """

    def __init__(self, policy: RecurrentActorCritic) -> None:
        grus = [policy.gru] if policy.value_gru is None else [policy.gru, policy.value_gru]
        hidden = policy.hidden_size
        self._w_ih_t = np.ascontiguousarray(np.stack([_array(g.weight_ih_l0).T for g in grus]))
        self._w_hh_t = np.ascontiguousarray(np.stack([_array(g.weight_hh_l0).T for g in grus]))
        self._b_i = np.stack([_array(g.bias_ih_l0) for g in grus])
        b_hh = np.stack([_array(g.bias_hh_l0) for g in grus])
        self._b_i[:, : 2 * hidden] += b_hh[:, : 2 * hidden]
        self._b_hn = np.ascontiguousarray(b_hh[:, 2 * hidden :])
        moments, features = policy.observation_moments, self._w_ih_t.shape[1]
        if moments is None:
            self._mask = np.zeros(features, dtype=np.bool_)
            self._mean, self._std = np.zeros(features, np.float32), np.ones(features, np.float32)
        else:
            self._mask = policy.normalized_features.numpy().copy()
            self._mean, self._std = _array(moments.mean), _array(moments.std())
        head = policy.head
        if len(head.layers) != 1:
            raise ValueError("RecurrentStep needs the action head to be one linear layer")
        self._head_w_t = np.ascontiguousarray(_array(head.layers[0].weight).T)
        self._head_b = _array(head.layers[0].bias)
        self._value_w = _array(policy.value_head.weight)[0].copy()
        self._value_b = np.float32(policy.value_head.bias.item())
        self._value_std = np.float32(policy.value_moments.std().item())
        self._value_mean = np.float32(policy.value_moments.mean.item())
        self._log_std: np.ndarray | None = None
        if isinstance(head, GaussianMLPPolicy):
            self._log_std = np.maximum(_array(head.log_std), np.float32(head.min_log_std))
            self.action_shape: tuple[int, ...] = (self._head_b.size,)
            self.action_dtype: type = np.float32
        elif isinstance(head, CategoricalMLPPolicy):
            self.action_shape, self.action_dtype = (), np.int64
        else:
            raise ValueError(f"RecurrentStep has no rule for a {type(head).__name__} head")

    def __call__(
        self, obs: np.ndarray, state: np.ndarray, noise: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs = np.ascontiguousarray(obs, dtype=np.float32)
        state = np.ascontiguousarray(state, dtype=np.float32)
        batch = obs.shape[0]
        new_state = np.empty_like(state)
        head_out = np.empty((batch, self._head_b.size), np.float32)
        values = np.empty(batch, np.float32)
        _step(
            obs,
            self._mean,
            self._std,
            self._mask,
            np.float32(OBSERVATION_CLIP),
            state,
            self._w_ih_t,
            self._b_i,
            self._w_hh_t,
            self._b_hn,
            new_state,
            self._head_w_t,
            self._head_b,
            head_out,
            self._value_w,
            self._value_b,
            values,
        )
        values = values * self._value_std + self._value_mean
        if self._log_std is not None:  # Gaussian: mean + std * noise, log N(action; mean, std)
            actions = head_out + np.exp(self._log_std) * noise
            log_probs = (-0.5 * noise**2 - self._log_std - _HALF_LOG_TWO_PI).sum(-1, dtype=np.float32)
            return actions, log_probs, values, new_state
        shifted = head_out - head_out.max(-1, keepdims=True)  # categorical: argmax(p / q), q ~ Exp(1)
        log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        actions = np.argmax(np.exp(log_softmax) / noise, axis=-1)
        return actions, log_softmax[np.arange(batch), actions], values, new_state

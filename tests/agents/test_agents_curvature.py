"""``inner.curvature``: the closed-form derivatives are an accelerator of the autograd ones, chosen once per run.

Given the same episodes, a whole MAML-TRPO meta-iteration with ``closed_form`` and with ``autograd`` must move the
meta-parameters (and Meta-SGD's rates) to the same place and log the same numbers, to float64 rounding.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metarl.agents import MAMLTRPO, TrainConfig
from metarl.agents.config import InnerConfig, PolicyConfig, TRPOConfig
from metarl.agents.curvature import AutogradDerivatives, ClosedFormDerivatives, choose_derivatives
from metarl.agents.episodes import Episodes

TASKS, EPISODES, HORIZON = 3, 4, 6


def _episodes(gen: torch.Generator) -> Episodes:
    shape = (TASKS, EPISODES, HORIZON)
    mask = torch.ones(shape, dtype=torch.float64)
    mask[0, 1, 4:] = 0.0  # one episode reached its goal early
    return Episodes(
        observations=0.3 * torch.randn(*shape, 2, generator=gen, dtype=torch.float64),
        actions=torch.randn(*shape, 2, generator=gen, dtype=torch.float64),
        rewards=-torch.rand(shape, generator=gen, dtype=torch.float64) * mask,
        mask=mask,
    )


def _meta_iteration(inner: InnerConfig) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The parameters sampled with and the meta-parameters after one meta-iteration on fixed episodes, and the
    numbers it logged."""
    config = TrainConfig(
        env="MetaRL/Navigation2D-v0",
        env_kwargs={"horizon": HORIZON},
        meta_batch_size=TASKS,
        episodes_per_task=EPISODES,
        policy=PolicyConfig(hidden_sizes=[8, 8], activation="tanh"),
        inner=inner,
        # Well conditioned: at the default damping (1e-5), conjugate gradient amplifies differences of 1e-16 in
        # the two forms' products to 1e-6 in the step (0.1 still does with DiCE); here they stay below 1e-10.
        trpo=TRPOConfig(cg_damping=1.0),
    )
    agent = MAMLTRPO(config)
    agent.policy.double()
    if agent.learning_rates is not None:
        agent.learning_rates.double()
    gen = torch.Generator().manual_seed(3)
    batches = iter([_episodes(gen) for _ in range(inner.steps + 1)])
    sampled_with = []

    def sample(params, *args, **kwargs):  # the same episodes for both choices
        sampled_with.append(params)
        return next(batches)

    agent.sampler.sample = sample
    metrics = agent.meta_iteration(0)
    state = {f"sampled{i}.{n}": p for i, params in enumerate(sampled_with) for n, p in params.items()}
    state.update({f"policy.{n}": p.detach() for n, p in agent.policy.named_parameters()})
    if agent.learning_rates is not None:
        state.update({f"lr.{n}": r.detach() for n, r in agent.learning_rates.as_dict().items()})
    return state, {k: v for k, v in metrics.items() if not k.startswith("charts/")}


@pytest.mark.parametrize(
    ("steps", "first_order", "meta_sgd", "objective"),
    [
        (1, False, False, "log_likelihood"),
        (1, True, False, "log_likelihood"),
        (1, False, True, "log_likelihood"),
        (1, True, True, "log_likelihood"),
        (1, False, False, "dice"),
        (2, False, False, "log_likelihood"),
        (2, False, True, "log_likelihood"),
        (0, False, False, "log_likelihood"),
    ],
)
def test_closed_form_and_autograd_give_the_same_meta_iteration(steps, first_order, meta_sgd, objective):
    inner = InnerConfig(steps=steps, lr=0.5, first_order=first_order, meta_sgd=meta_sgd, objective=objective)
    closed_state, closed_metrics = _meta_iteration(dataclasses.replace(inner, curvature="closed_form"))
    autograd_state, autograd_metrics = _meta_iteration(dataclasses.replace(inner, curvature="autograd"))
    assert closed_metrics["losses/step_accepted"] == 1.0  # a step was taken: the comparison says something
    assert closed_metrics.keys() == autograd_metrics.keys()
    for key, value in closed_metrics.items():
        assert value == pytest.approx(autograd_metrics[key], rel=1e-9, abs=1e-12), key
    for name, value in closed_state.items():
        torch.testing.assert_close(value, autograd_state[name], rtol=1e-9, atol=1e-12, msg=name)


def test_auto_takes_the_closed_form_where_the_policy_has_one():
    gaussian = MAMLTRPO(TrainConfig(env="MetaRL/Navigation2D-v0", policy=PolicyConfig(hidden_sizes=[4])))
    categorical = MAMLTRPO(TrainConfig(env="MetaRL/Bandit-K5-v0", policy=PolicyConfig(hidden_sizes=[4])))
    auto = InnerConfig()
    assert isinstance(choose_derivatives(gaussian.policy, auto), ClosedFormDerivatives)
    assert isinstance(choose_derivatives(categorical.policy, auto), AutogradDerivatives)
    autograd = InnerConfig(curvature="autograd")
    assert isinstance(choose_derivatives(gaussian.policy, autograd), AutogradDerivatives)


def test_closed_form_on_a_policy_without_one_fails_at_construction():
    config = TrainConfig(env="MetaRL/Bandit-K5-v0", inner=InnerConfig(curvature="closed_form"))
    with pytest.raises(ValueError, match="inner.curvature=closed_form needs a Gaussian MLP policy") as error:
        MAMLTRPO(config)
    assert "\n" not in str(error.value)

"""ProMP and MAML-PPO: a meta-iteration equals the reference algorithm written as a plain per-task autograd loop;
the adaptive KL rule; resume; every small env; learning on Navigation2D; config errors; evaluation."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from conftest import stopped_after_one_iteration, without_timings
from textbook_policy import EPISODES, HORIZON, TASKS, gaussian_policy, masked_mean, random_episodes
from torch.distributions import Normal, kl_divergence

from metarl.agents import MAMLPPO, ProMP, TrainConfig, evaluate_run
from metarl.agents.baseline import LinearFeatureBaseline
from metarl.agents.config import InnerConfig, PolicyConfig, ProMPConfig
from metarl.agents.inner import compute_advantages
from metarl.agents.promp import adapt_kl_coefficients
from metarl.agents.registry import agent_class, load_agent
from metarl.errors import UserError


class _Reference:
    """ProMP as jonasrothfuss/ProMP's ``pro_mp.py`` builds its graph, task by task with plain autograd (none of
    metarl's code): inner steps on ``-mean(pi / pi_old * A)`` (MAML-PPO: ``-mean(stop(pi / pi_old) log pi A)``),
    the clipped post-adaptation surrogate, the mean over steps of ``c_k * KL(pi_old_k || pi_k)``."""

    def __init__(self, theta, rounds, post, advantages, config: TrainConfig, kl_penalty: bool):
        self.rounds, self.post, self.advantages = rounds, post, advantages
        self.lr, self.lvc = config.inner.lr, config.inner.objective == "likelihood_ratio"
        self.first_order, self.clip = config.inner.first_order, config.promp.clip_eps
        self.coefficients = [config.promp.init_inner_kl_penalty if kl_penalty else 0.0] * len(rounds)
        self.old = []  # per task, the distributions that sampled each round: those at theta
        for task in range(TASKS):
            self.old.append([Normal(d.loc.detach(), d.scale.detach()) for d in self._forward(theta, task)])

    def _forward(self, values, task):
        """The policy before each inner step and after the last: their distributions on their episodes."""
        dists = []
        for k, episodes in enumerate(self.rounds):
            pi = gaussian_policy(values, episodes.observations[task])
            dists.append(pi)
            lp = pi.log_prob(episodes.actions[task]).sum(-1)
            sampled = self.old[task][k].log_prob(episodes.actions[task]).sum(-1) if self.old[task:] else lp
            ratio = torch.exp(lp - sampled.detach())
            adv, mask = self.advantages[k][task], episodes.mask[task]
            if self.lvc:
                inner = -masked_mean(ratio * adv, mask)
            else:
                inner = -masked_mean(ratio.detach() * lp * adv, mask)
            grads = torch.autograd.grad(inner, values, create_graph=not self.first_order)
            values = [v - self.lr * g for v, g in zip(values, grads, strict=True)]
        dists.append(gaussian_policy(values, self.post.observations[task]))
        return dists

    def loss(self, values):
        surrogates, kls = [], [[] for _ in self.rounds]
        for task in range(TASKS):
            dists = self._forward(values, task)
            for k, episodes in enumerate(self.rounds):
                kl = kl_divergence(self.old[task][k], dists[k]).sum(-1)
                kls[k].append(masked_mean(kl, episodes.mask[task]))
            actions, mask, adv = self.post.actions[task], self.post.mask[task], self.advantages[-1][task]
            ratio = torch.exp(
                dists[-1].log_prob(actions).sum(-1) - self.old[task][-1].log_prob(actions).sum(-1)
            )
            clipped = torch.min(ratio * adv, ratio.clamp(1 - self.clip, 1 + self.clip) * adv)
            surrogates.append(-masked_mean(clipped, mask))
        mean_kls = [sum(k) / TASKS for k in kls]
        penalty = sum(c * kl for c, kl in zip(self.coefficients, mean_kls, strict=True)) / len(mean_kls)
        return sum(surrogates) / TASKS + penalty, [float(kl.detach()) for kl in mean_kls]


def _agent_and_reference(algo: str, steps: int, **inner):
    objective = "likelihood_ratio" if algo == "promp" else "log_likelihood"
    config = TrainConfig(
        algo=algo,
        env="MetaRL/Navigation2D-v0",
        env_kwargs={"horizon": HORIZON},
        meta_batch_size=TASKS,
        episodes_per_task=EPISODES,
        policy=PolicyConfig(hidden_sizes=[8, 8]),
        inner=InnerConfig(steps=steps, lr=0.5, objective=objective, **inner),
        # a large step and a tight clip range, so that ratios leave it and the KL term is felt
        promp=ProMPConfig(ppo_steps=4, clip_eps=0.05, learning_rate=0.03, init_inner_kl_penalty=2.0),
    )
    agent = agent_class(algo)(config)
    agent.policy.double()
    agent.optimizer = torch.optim.Adam(agent._meta_parameters(), lr=config.promp.learning_rate)
    gen = torch.Generator().manual_seed(5)
    batches = [random_episodes(gen) for _ in range(steps + 1)]
    feed = iter(batches)
    agent.sampler.sample = lambda *args, **kwargs: next(feed)  # the same episodes for both forms
    names = sorted(agent.policy.params(), key=lambda n: n == "log_std")  # the layers in order, then log_std
    theta = [agent.policy.params()[n].detach().clone().requires_grad_(True) for n in names]
    advantages = [
        compute_advantages(e, config.gamma, config.gae_lambda, LinearFeatureBaseline()) for e in batches
    ]
    reference = _Reference(theta, batches[:-1], batches[-1], advantages, config, algo == "promp")
    return agent, reference, names, theta


@pytest.mark.parametrize(
    ("algo", "steps", "curvature"),
    [
        ("promp", 1, "closed_form"),
        ("promp", 1, "autograd"),
        ("promp", 2, "auto"),
        ("maml-ppo", 1, "closed_form"),
        ("maml-ppo", 2, "auto"),
    ],
)
def test_each_adam_step_follows_the_reference_gradient(algo, steps, curvature):
    agent, reference, names, theta = _agent_and_reference(algo, steps, curvature=curvature)
    recorded = []
    adam_step = agent._adam_step
    agent._adam_step = lambda gradient: (recorded.append(gradient.clone()), adam_step(gradient))
    metrics = agent.meta_iteration(0)

    optimizer = torch.optim.Adam(theta, lr=agent.config.promp.learning_rate)
    index = [names.index(n) for n in agent.policy.params()]  # the agent's flat order
    for got in recorded:
        loss, _ = reference.loss(theta)
        grads = torch.autograd.grad(loss, theta)
        want = torch.cat([grads[i].reshape(-1) for i in index])
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)
        for p, g in zip(theta, grads, strict=True):
            p.grad = g
        optimizer.step()
    loss, kls = reference.loss(theta)
    for name, want in zip(names, theta, strict=True):
        torch.testing.assert_close(agent.policy.params()[name].detach(), want.detach(), rtol=1e-7, atol=1e-9)
    assert metrics["losses/objective_after"] == pytest.approx(float(loss.detach()), rel=1e-6)
    assert metrics["losses/inner_kl"] == pytest.approx(sum(kls) / len(kls), rel=1e-6)
    # the comparison says something: the ratios left the clip range, and the KL term pulls (ProMP)
    assert metrics["losses/clip_fraction"] > 0.05
    assert len(recorded) == 4 and not torch.allclose(recorded[0], recorded[-1])


def test_the_kl_penalty_changes_the_gradient_and_maml_ppo_has_none():
    promp, reference, names, theta = _agent_and_reference("promp", 1)
    reference.coefficients = [0.0]
    recorded = []
    promp._adam_step = lambda gradient: recorded.append(gradient)
    promp.meta_iteration(0)
    loss, _ = reference.loss(theta)
    grads = torch.autograd.grad(loss, theta)
    without_kl = torch.cat([grads[names.index(n)].reshape(-1) for n in promp.policy.params()])
    # the first step is at the sampling point, where the KL's gradient vanishes; later ones differ
    torch.testing.assert_close(recorded[0], without_kl, rtol=1e-7, atol=1e-10)
    assert MAMLPPO.kl_penalty is False and ProMP.kl_penalty is True


def test_adaptive_kl_coefficients_follow_the_reference_rule():
    target = 0.01
    assert adapt_kl_coefficients([1.0, 1.0, 1.0, 1.0], [0.001, 0.01, 0.1, target / 1.5], target) == [
        0.5,
        1.0,
        2.0,
        1.0,  # on the boundary: kept
    ]
    assert adapt_kl_coefficients([4e-3, 4e-3], [target * 1.5, 0.0151], target) == [4e-3, 8e-3]

    config = tiny("promp", promp=ProMPConfig(adaptive_inner_kl_penalty=True, init_inner_kl_penalty=0.1))
    agent = ProMP(config)
    metrics = agent.meta_iteration(0)
    expected = adapt_kl_coefficients([0.1], [metrics["losses/inner_kl"]], 0.01)
    assert agent.inner_kl_coefficients == expected != [0.1]
    assert metrics["losses/inner_kl_coefficient"] == 0.1  # the coefficient the iteration used
    fixed = ProMP(tiny("promp", promp=ProMPConfig(init_inner_kl_penalty=0.1)))
    fixed.meta_iteration(0)
    assert fixed.inner_kl_coefficients == [0.1]


def tiny(algo: str, env: str = "MetaRL/Navigation2D-v0", **changes) -> TrainConfig:
    objective = "likelihood_ratio" if algo == "promp" else "log_likelihood"
    settings = {
        "env_kwargs": {"horizon": 10} if env == "MetaRL/Navigation2D-v0" else {},
        "iterations": 3,
        "meta_batch_size": 3,
        "episodes_per_task": 4,
        "policy": PolicyConfig(hidden_sizes=[8, 8]),
        "inner": InnerConfig(objective=objective),
    }
    return TrainConfig(algo=algo, env=env, **{**settings, **changes})


def _flat(agent) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()])


ENV_IDS = ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"]
if importlib.util.find_spec("mujoco") is not None:
    ENV_IDS.append("MetaRL/HalfCheetahVel-v0")


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("algo", ["promp", "maml-ppo"])
def test_one_iteration_on_each_kind_of_env(algo, env_id):
    agent = agent_class(algo)(tiny(algo, env_id, meta_batch_size=2, episodes_per_task=2))
    before = _flat(agent)
    metrics = agent.meta_iteration(0)
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"meta/return_before", "meta/return_after_step1", "losses/inner_kl"} <= set(metrics)
    assert ("losses/inner_kl_coefficient" in metrics) == (algo == "promp")
    assert not torch.equal(before, _flat(agent)), "the meta-parameters did not move"


def test_meta_sgd_rates_are_trained_and_zero_steps_is_ppo_on_the_mixture():
    agent = ProMP(tiny("promp", inner=InnerConfig(objective="likelihood_ratio", meta_sgd=True)))
    rates = [r.detach().clone() for r in agent.learning_rates.parameters()]
    agent.meta_iteration(0)
    assert any(
        not torch.equal(a, b.detach()) for a, b in zip(rates, agent.learning_rates.parameters(), strict=True)
    )
    plain = ProMP(tiny("promp", inner=InnerConfig(steps=0, objective="likelihood_ratio")))
    metrics = plain.meta_iteration(0)
    assert "meta/return_after_step1" not in metrics and "losses/inner_kl" not in metrics


@pytest.mark.parametrize("algo", ["promp", "maml-ppo"])
def test_a_fresh_agent_loaded_from_a_checkpoint_continues_exactly(algo, tmp_path):
    config = tiny(algo, promp=ProMPConfig(adaptive_inner_kl_penalty=True))
    uninterrupted = agent_class(algo)(config).train(progress=False)
    resumed = stopped_after_one_iteration(config, tmp_path / "run")
    assert resumed.iteration == 1 and resumed.optimizer.state_dict()["state"], (
        "Adam's moments were not restored"
    )
    assert without_timings(uninterrupted[1:]) == without_timings(resumed.train(progress=False))


def test_config_errors_and_defaults():
    with pytest.raises(UserError, match="inner.objective=likelihood_ratio"):
        TrainConfig(algo="promp")
    with pytest.raises(UserError, match="inner.algorithm=vpg"):
        TrainConfig(algo="maml-ppo", inner=InnerConfig(algorithm="ppo"))
    with pytest.raises(UserError, match="promp.clip_eps"):
        ProMPConfig(clip_eps=0.0)
    with pytest.raises(UserError, match="promp.ppo_steps"):
        ProMPConfig(ppo_steps=0)
    with pytest.raises(UserError, match="algo"):
        ProMP(tiny("maml-ppo"))
    assert ProMP().config.inner.objective == "likelihood_ratio"
    assert MAMLPPO().config.inner.objective == "log_likelihood"


def test_evaluate_a_promp_run(tmp_path):
    config = tiny("promp", iterations=1)
    ProMP(config).train(tmp_path / "run", progress=False)
    results = evaluate_run(tmp_path / "run", adapt_steps=1, num_tasks=2, baselines=["pretrained"])
    assert set(results["learners"]) == {"promp", "pretrained"}
    assert results["algo"] == "promp" and len(results["learners"]["promp"]["mean"]) == 2
    pretrained = load_agent(tmp_path / "run" / "baselines" / "pretrained")
    assert pretrained.algo == "maml-trpo" and pretrained.config.inner.steps == 0


@pytest.mark.slow
def test_tiny_navigation_run_improves_the_post_adaptation_return():
    torch.set_num_threads(1)
    config = TrainConfig(
        algo="promp",
        env_kwargs={"horizon": 30},
        iterations=15,
        meta_batch_size=8,
        episodes_per_task=8,
        seed=0,
        policy=PolicyConfig(hidden_sizes=[16, 16]),
        inner=InnerConfig(objective="likelihood_ratio"),
        promp=ProMPConfig(learning_rate=1e-2),
    )
    history = ProMP(config).train(progress=False)
    after = [m["meta/return_after_step1"] for m in history]
    first, last = sum(after[:3]) / 3, sum(after[-3:]) / 3
    assert last > first + 2.0, (first, last)

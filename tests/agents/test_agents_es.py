"""ES-MAML and OpenAI-ES: the ES estimator against the textbook loop, centered ranks, the estimate on a quadratic,
one iteration per adaptation operator and env, resume, config errors, learning on Navigation2D."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import stopped_after_one_iteration, without_timings

from metarl.agents import ESMAML, OpenAIES, TrainConfig
from metarl.agents.config import ESConfig, InnerConfig, PolicyConfig
from metarl.agents.es_fitness import flat_parameters
from metarl.agents.registry import agent_class
from metarl.core import (
    antithetic_directions,
    antithetic_gradient,
    antithetic_population,
    centered_ranks,
    es_gradient,
)
from metarl.errors import UserError


def quadratic(target: torch.Tensor):
    def fitness(vectors: torch.Tensor) -> torch.Tensor:
        return -((vectors - target) ** 2).sum(-1)

    return fitness


def test_antithetic_estimate_equals_the_textbook_loop():
    generator = torch.Generator().manual_seed(0)
    theta, target, sigma, n = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64), 0.1, 7
    fitness = quadratic(target)
    eps = antithetic_directions(n, 5, generator).double()
    population = antithetic_population(theta, eps, sigma)
    fast = antithetic_gradient(eps, fitness(population), sigma, shaping="none")
    textbook = torch.zeros(5, dtype=torch.float64)
    for i in range(n):
        plus, minus = fitness(theta + sigma * eps[i]), fitness(theta - sigma * eps[i])
        textbook += (plus - minus) * eps[i]
    textbook /= 2 * n * sigma
    torch.testing.assert_close(fast, textbook)
    # es_gradient draws the same directions from the same generator and evaluates the population in one call
    calls = []
    same, values = es_gradient(
        theta,
        lambda v: calls.append(v.shape) or fitness(v),
        n,
        sigma,
        torch.Generator().manual_seed(0),
        shaping="none",
    )
    torch.testing.assert_close(same, textbook)
    assert calls == [(2 * n, 5)] and values.shape == (2 * n,)


def test_centered_ranks_by_hand_and_per_column():
    values = torch.tensor([3.0, -1.0, 10.0, 0.5, 0.5])
    # ranks 3, 0, 4, 1, 2 (ties by position) over n - 1 = 4, minus 0.5
    torch.testing.assert_close(centered_ranks(values), torch.tensor([0.25, -0.5, 0.5, -0.25, 0.0]))
    columns = torch.stack([values, -values], dim=1)
    torch.testing.assert_close(centered_ranks(columns)[:, 0], centered_ranks(values))
    torch.testing.assert_close(centered_ranks(columns)[:, 1], centered_ranks(-values))
    assert torch.equal(centered_ranks(torch.tensor([4.0])), torch.tensor([0.0]))


def test_the_estimate_points_along_the_true_gradient_of_a_quadratic():
    generator = torch.Generator().manual_seed(1)
    theta, target = torch.zeros(20, dtype=torch.float64), torch.linspace(-1, 1, 20, dtype=torch.float64)
    true = 2 * (target - theta)
    for shaping in ("none", "centered_ranks"):
        estimate, _ = es_gradient(theta, quadratic(target), 400, 0.05, generator, shaping=shaping)
        cosine = torch.nn.functional.cosine_similarity(estimate, true, dim=0)
        assert cosine > 0.9, (shaping, float(cosine))
    raw, _ = es_gradient(theta, quadratic(target), 2000, 0.05, generator, shaping="none")
    assert torch.allclose(raw, true, atol=0.35), "without shaping the estimate is unbiased in scale too"


def tiny(algo: str, env: str = "MetaRL/Navigation2D-v0", iterations: int = 3, **es) -> TrainConfig:
    return TrainConfig(
        algo=algo,
        env=env,
        env_kwargs={"horizon": 10} if env == "MetaRL/Navigation2D-v0" else {},
        iterations=iterations,
        meta_batch_size=2,
        episodes_per_task=2,
        policy=PolicyConfig(hidden_sizes=[8, 8]),
        es=ESConfig(pairs=3, adaptation_pairs=2, **es),
    )


@pytest.mark.parametrize("env_id", ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"])
@pytest.mark.parametrize(
    ("algo", "adaptation"),
    [("openai-es", "none"), ("es-maml", "es"), ("es-maml", "pg"), ("es-maml", "hill_climbing")],
)
def test_one_iteration_per_adaptation_and_env(algo, adaptation, env_id):
    agent = agent_class(algo)(tiny(algo, env_id, adaptation=adaptation))
    before = flat_parameters(agent.policy)
    metrics = agent.meta_iteration(0)
    assert all(math.isfinite(v) for v in metrics.values())
    assert ("meta/return_after_step1" in metrics) == (algo == "es-maml")
    assert not torch.equal(before, flat_parameters(agent.policy)), "the meta-parameters did not move"
    # env steps: (2 pairs + 1) vectors x 2 tasks x 2 episodes per round; es/hill climbing: x (2 m + 1) first
    horizon = agent.sampler.env.unwrapped.horizon
    per_round = 7 * 2 * 2 * horizon
    expected = {"none": per_round, "pg": 2 * per_round, "es": 5 * per_round + per_round}[
        "es" if adaptation == "hill_climbing" else adaptation
    ]
    if env_id != "MetaRL/Navigation2D-v0":  # fixed-length episodes
        assert metrics["env_steps"] == expected


def test_es_adaptation_moves_each_slot_by_its_own_estimate():
    agent = ESMAML(tiny("es-maml", adaptation="es", adaptation_steps=2))
    theta = flat_parameters(agent.policy).unsqueeze(0)
    tasks = agent.sampler.env.unwrapped.sample_tasks(2)
    result = agent.evaluate_population(theta, tasks, seed=5)
    assert result.returns.shape == (1, 2, 3)
    again = agent.evaluate_population(theta, tasks, seed=5)
    assert torch.equal(result.returns, again.returns), "the same seed must give the same fitness"
    other = agent.evaluate_population(theta, tasks, seed=6)
    assert not torch.equal(result.returns, other.returns)


@pytest.mark.parametrize("algo", ["openai-es", "es-maml"])
def test_a_fresh_agent_loaded_from_a_checkpoint_continues_exactly(algo, tmp_path):
    config = tiny(algo)
    uninterrupted = agent_class(algo)(config).train(progress=False)
    resumed = stopped_after_one_iteration(config, tmp_path / "run")
    assert resumed.iteration == 1 and resumed.optimizer.state_dict()["state"], (
        "Adam's moments were not restored"
    )
    assert without_timings(uninterrupted[1:]) == without_timings(resumed.train(progress=False))


def test_sgd_step_and_weight_decay_follow_the_estimate():
    config = tiny("openai-es", optimizer="sgd", lr=0.1, weight_decay=0.5)
    agent = OpenAIES(config)
    theta = flat_parameters(agent.policy)
    agent.meta_iteration(0)
    moved = flat_parameters(agent.policy) - theta
    # redo the estimate: same seeds give the same directions and fitness
    twin = OpenAIES(config)
    from metarl.agents.streams import TRAIN_STREAM, stream_rng, torch_generator
    from metarl.envs import sample_tasks

    rng = stream_rng(config.seed, TRAIN_STREAM, 0)
    generator = torch_generator(rng)
    tasks = sample_tasks(twin.sampler.env, config.meta_batch_size, int(rng.integers(2**31)))
    eps = antithetic_directions(config.es.pairs, theta.numel(), generator)
    vectors = torch.cat([theta.unsqueeze(0), antithetic_population(theta, eps, config.es.sigma)])
    fitness = twin.evaluate_population(vectors, tasks, int(rng.integers(2**31))).fitness.mean(1)
    estimate = antithetic_gradient(eps, fitness[1:], config.es.sigma) - 0.5 * theta
    torch.testing.assert_close(moved, 0.1 * estimate)


def test_config_errors():
    with pytest.raises(UserError, match="es.sigma"):
        ESConfig(sigma=0.0)
    with pytest.raises(UserError, match="es.pairs"):
        ESConfig(pairs=0)
    with pytest.raises(UserError, match="es.adaptation_pairs"):
        TrainConfig(
            algo="es-maml", meta_batch_size=100, episodes_per_task=100, es=ESConfig(adaptation_pairs=50)
        )
    with pytest.raises(UserError, match="inner.meta_sgd=false"):
        TrainConfig(algo="openai-es", inner=InnerConfig(meta_sgd=True))
    with pytest.raises(UserError, match="algo"):
        ESMAML(tiny("openai-es"))


def test_openai_es_learns_the_navigation_oracle():
    """The goal in the observation (oracle), so a policy without adaptation can learn to reach it (on the task
    mixture alone the best it can do is stay near the origin). About 1.5 s."""
    torch.set_num_threads(1)
    config = TrainConfig(
        algo="openai-es",
        env_kwargs={"horizon": 20},
        iterations=40,
        meta_batch_size=4,
        episodes_per_task=2,
        seed=0,
        oracle=True,
        policy=PolicyConfig(hidden_sizes=[16, 16]),
        es=ESConfig(pairs=16, sigma=0.1, lr=0.05),
    )
    history = OpenAIES(config).train(progress=False)
    returns = [m["meta/return_before"] for m in history]
    first, last = sum(returns[:5]) / 5, sum(returns[-5:]) / 5
    assert last > first + 3.0, (first, last)


def test_evaluate_adds_the_es_adaptation_on_the_experience_axis(tmp_path):
    from metarl.agents import evaluate_run

    config = tiny("es-maml", adaptation="es", iterations=1)
    ESMAML(config).train(tmp_path / "run", progress=False)
    results = evaluate_run(tmp_path / "run", adapt_steps=2, num_tasks=2, baselines=[])
    own = results["learners"]["es-maml (es adaptation)"]
    # 2 adaptation pairs: the parameters and 4 perturbations, 2 episodes each, per step
    assert own["experience"] == [0, 10, 20] and len(own["mean"]) == 3
    assert results["learners"]["es-maml"]["experience"] == [0, 2, 4]
    pg = tiny("es-maml", adaptation="pg", iterations=1)
    ESMAML(pg).train(tmp_path / "pg", progress=False)
    assert set(evaluate_run(tmp_path / "pg", adapt_steps=1, num_tasks=2, baselines=[])["learners"]) == {
        "es-maml"
    }

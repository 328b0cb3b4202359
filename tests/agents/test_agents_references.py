"""metarl.agents.references: Duan et al. 2016's bandit and tabular-MDP baselines against textbook versions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from metarl.agents import references as refs
from metarl.agents.references.bandits import policy_generator
from metarl.agents.references.tabular import optimistic_transitions
from metarl.envs.bandit import BernoulliBanditEnv
from metarl.envs.tabular_mdp import TabularMDPEnv


def _tasks(env, count, seed):
    env.np_random = np.random.default_rng(seed)
    return env.sample_tasks(count)


def _textbook_bandit(rule, arms, pulls, tasks, seed):
    """One single env per task, stepped pull by pull; the policy's numbers drawn task by task in turn."""
    rng = policy_generator(seed)
    envs = []
    for i, task in enumerate(tasks):
        env = BernoulliBanditEnv(arms, horizon=pulls)
        env.set_task(task)
        env.reset(seed=seed + i)
        envs.append(env)
    wins = [[0] * arms for _ in tasks]
    losses = [[0] * arms for _ in tasks]
    totals = [0.0] * len(tasks)
    for t in range(pulls):
        for i, env in enumerate(envs):
            if rule == "ucb1":
                unpulled = [a for a in range(arms) if wins[i][a] + losses[i][a] == 0]
                if unpulled:
                    arm = unpulled[0]
                else:

                    def score(a, i=i, t=t):
                        n = wins[i][a] + losses[i][a]
                        return wins[i][a] / n + 0.5 * math.sqrt(2 * math.log(t) / n)

                    arm = max(range(arms), key=score)
            else:  # Thompson: a Beta(1 + wins, 1 + losses) draw per arm as a ratio of gammas
                gammas = rng.standard_gamma([1.0 + w for w in wins[i]] + [1.0 + f for f in losses[i]])
                draws = [gammas[a] / (gammas[a] + gammas[arms + a]) for a in range(arms)]
                arm = max(range(arms), key=lambda a, draws=draws: draws[a])
            reward = env.step(arm)[1]
            wins[i][arm] += reward
            losses[i][arm] += 1 - reward
            totals[i] += reward
    return np.array(totals)


@pytest.mark.parametrize("policy", [refs.UCB1(0.5), refs.Thompson(1)], ids=["ucb1", "thompson"])
def test_vectorised_bandit_policies_equal_a_per_task_loop(policy):
    tasks = _tasks(BernoulliBanditEnv(5), 8, seed=3)
    totals = refs.run_bandit(policy, "MetaRL/Bandit-K5-v0", tasks, 120, seed=11)
    expected = _textbook_bandit(policy.name, 5, 120, tasks, seed=11)
    np.testing.assert_array_equal(totals, expected)
    assert totals.sum() > 0


def test_one_sample_ots_is_thompson_sampling():
    tasks = _tasks(BernoulliBanditEnv(10), 20, seed=0)
    a = refs.run_bandit(refs.Thompson(1), "MetaRL/Bandit-K10-v0", tasks, 40, seed=5)
    b = refs.run_bandit(refs.Thompson(3), "MetaRL/Bandit-K10-v0", tasks, 40, seed=5)
    c = refs.run_bandit(refs.Thompson(1), "MetaRL/Bandit-K10-v0", tasks, 40, seed=5)
    np.testing.assert_array_equal(a, c)  # seeded: the same totals twice
    assert not np.array_equal(a, b)


def _textbook_gittins(a, b, discount, depth=400, tol=1e-7):
    """The index of Beta(a, b) by bisection on the retirement reward, one memoised recursion per trial value."""

    def advantage(lam):
        memo = {}

        def value(s, f):
            if s + f >= depth:
                return max(lam, (a + s) / (a + b + s + f)) / (1 - discount)
            if (s, f) not in memo:
                p = (a + s) / (a + b + s + f)
                pull = p * (1 + discount * value(s + 1, f)) + (1 - p) * discount * value(s, f + 1)
                memo[s, f] = max(pull, lam / (1 - discount))
            return memo[s, f]

        p = a / (a + b)
        return p * (1 + discount * value(1, 0)) + (1 - p) * discount * value(0, 1) - lam / (1 - discount)

    low, high = 0.0, 1.0
    while high - low > tol:
        mid = (low + high) / 2
        low, high = (mid, high) if advantage(mid) >= 0 else (low, mid)
    return (low + high) / 2


def test_gittins_index_matches_the_published_table():
    # the classic tabulated index of a Beta(1, 1) Bernoulli arm at discount 0.9 (Gittins 1979; Gittins,
    # Glazebrook & Weber 2011, tables of Beta-Bernoulli indices): 0.7029
    table = refs.gittins_indices(0.9, 4)
    assert table[0, 0] == pytest.approx(0.7029, abs=1e-4)


@pytest.mark.parametrize("discount", [0.5, 0.8, 0.9])
def test_gittins_indices_equal_bisection_on_each_state(discount):
    table = refs.gittins_indices(discount, 6)
    depth = 60 if discount < 0.9 else 150
    for s, f in [(0, 0), (1, 0), (0, 1), (3, 2), (0, 6), (5, 1)]:
        expected = _textbook_gittins(1 + s, 1 + f, discount, depth=s + f + depth)
        assert table[s, f] == pytest.approx(expected, abs=2e-5), (s, f)
    assert np.isnan(table[6, 6])
    assert table[1, 0] > table[0, 0] > table[0, 1] > 0.5 * table[0, 0]


def _brute_force_optimum(rewards, transitions, horizon, start):
    """Best expected return over every deterministic non-stationary policy, by exact forward propagation."""
    states, actions = rewards.shape
    best = -np.inf
    for choice in itertools.product(range(actions), repeat=states * horizon):
        plan = np.array(choice).reshape(horizon, states)
        belief = np.eye(states)[start]
        total = 0.0
        for h in range(horizon):
            acts = plan[h]
            total += belief @ rewards[np.arange(states), acts]
            belief = belief @ transitions[np.arange(states), acts]
        best = max(best, total)
    return best


def test_value_iteration_equals_brute_force_on_a_tiny_mdp():
    rng = np.random.default_rng(0)
    rewards = rng.normal(1.0, 1.0, size=(2, 2))
    transitions = rng.dirichlet(np.ones(2), size=(2, 2))
    q = refs.value_iteration(rewards, transitions, horizon=3)
    for start in range(2):
        assert q[0, start].max() == pytest.approx(_brute_force_optimum(rewards, transitions, 3, start))


def test_opsrl_of_identical_samples_is_psrl_on_that_model():
    posterior = refs.TabularPosterior.empty(3, 4, 2)
    q_psrl = refs.PosteriorSampling(1).plan(posterior, 5, np.random.default_rng(1))
    rewards, transitions = posterior.sample(np.random.default_rng(1), 1)
    np.testing.assert_allclose(q_psrl, refs.value_iteration(rewards[:, 0], transitions[:, 0], 5))


def test_optimistic_transitions_are_feasible_and_beat_sampled_feasible_ones():
    rng = np.random.default_rng(2)
    empirical = rng.dirichlet(np.ones(5), size=(1, 1, 3))
    radius = np.array([[[0.1, 0.6, 3.0]]])
    values = rng.normal(size=(1, 5))
    optimistic = optimistic_transitions(empirical, radius, values)
    np.testing.assert_allclose(optimistic.sum(-1), 1.0)
    assert (optimistic >= -1e-12).all()
    assert (np.abs(optimistic - empirical).sum(-1) <= radius + 1e-9).all()
    assert optimistic[0, 0, 2, np.argmax(values)] == pytest.approx(1.0)  # radius 3: all mass on the best
    for _ in range(2000):  # random feasible distributions never do better
        other = rng.dirichlet(np.ones(5), size=(1, 1, 3))
        feasible = np.abs(other - empirical).sum(-1) <= radius
        better = (other @ values[0]) > (optimistic @ values[0]) + 1e-9
        assert not (feasible & better).any()


def test_mdp_runs_are_anytime_and_seeded():
    tasks = _tasks(TabularMDPEnv(), 6, seed=1)
    long = refs.run_mdp(refs.PosteriorSampling(1), "MetaRL/TabularMDP-v0", tasks, 6, seed=4)
    short = refs.run_mdp(refs.PosteriorSampling(1), "MetaRL/TabularMDP-v0", tasks, 3, seed=4)
    assert long.shape == (6, 6)
    np.testing.assert_array_equal(long[:, :3], short)


def test_references_are_ordered_as_expected():
    tasks = _tasks(BernoulliBanditEnv(5), 300, seed=0)
    env_id = "MetaRL/Bandit-K5-v0"
    random = refs.run_bandit(refs.RandomArm(), env_id, tasks, 100, seed=0).mean()
    ucb = refs.run_bandit(refs.UCB1(0.2), env_id, tasks, 100, seed=0).mean()
    ts = refs.run_bandit(refs.Thompson(1), env_id, tasks, 100, seed=0).mean()
    gittins = refs.run_bandit(refs.Gittins(0.98), env_id, tasks, 100, seed=0).mean()
    assert 45 < random < 55  # E[p] = 0.5 per pull
    assert ucb > random + 20 and ts > random + 20
    assert gittins > ts - 1.0  # the Bayes-optimal index is not beaten by sampling
    mdp_tasks = _tasks(TabularMDPEnv(), 100, seed=0)
    mdp = {
        name: refs.run_mdp(policy, "MetaRL/TabularMDP-v0", mdp_tasks, 10, seed=0).sum(axis=1).mean()
        for name, policy in (("random", refs.MDPPolicy()), ("psrl", refs.PosteriorSampling(1)))
    }
    assert mdp["psrl"] > mdp["random"] + 20

"""The Ray sampler gives the in-process sampler's episodes bit for bit, survives a killed worker, and says clearly
when there is no cluster. The slicing itself (driver-drawn noise, per-slice seeds, engines reused across rounds)
is checked without Ray first, so it runs where the ``ray`` extra is not installed."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket

import pytest
import torch

from metarl.agents import MAMLTRPO, PolicyConfig, TrainConfig
from metarl.agents.config import ESConfig, SamplerConfig
from metarl.agents.episodes import Episodes
from metarl.agents.policies import CategoricalMLPPolicy, GaussianMLPPolicy, make_policy
from metarl.agents.ray_sampler import SliceSampler, task_slices
from metarl.agents.registry import ALGORITHMS
from metarl.agents.sampler import BatchedSampler, make_env
from metarl.core import stack_over_tasks
from metarl.envs import sample_tasks
from metarl.errors import UserError

NAV = "MetaRL/Navigation2D-v0"


def _setup(env_id, env_kwargs, num_tasks, episodes, seed=0):
    env = make_env(env_id, env_kwargs)
    torch.manual_seed(seed)
    policy = make_policy(env.observation_space, env.action_space, (8, 8), "tanh", 1.0)
    gen = torch.Generator().manual_seed(seed)
    stacked = stack_over_tasks({n: p.detach() for n, p in policy.params().items()}, num_tasks, copy=True)
    params = {n: p + 0.1 * torch.randn(p.shape, generator=gen) for n, p in stacked.items()}
    tasks = sample_tasks(env, num_tasks, seed)
    sampler = BatchedSampler(env_id, env_kwargs, policy, episodes)
    return sampler, params, tasks


def _assert_same(a: Episodes, b: Episodes) -> None:
    for field in ("observations", "actions", "rewards", "mask", "successes"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), field


def test_action_noise_reproduces_act_for_gaussian_and_categorical_policies():
    obs = torch.randn(5, 7, 3, generator=torch.Generator().manual_seed(1))
    for policy in (GaussianMLPPolicy(3, 2, (16,), min_std=0.5), CategoricalMLPPolicy(3, 4, (16,))):
        params = stack_over_tasks({n: p.detach() for n, p in policy.params().items()}, 5, copy=True)
        params = {n: p + 0.3 * torch.randn(p.shape) for n, p in params.items()}
        for seed in range(20):
            expected = policy.act(obs, params, torch.Generator().manual_seed(seed))
            generator = torch.Generator().manual_seed(seed)
            noise = policy.action_noise((5, 7), generator)
            assert torch.equal(policy.act_with_noise(obs, params, noise), expected)
            # and act_with_noise on a slice of tasks takes those tasks' actions
            part = {n: p[1:3] for n, p in params.items()}
            assert torch.equal(policy.act_with_noise(obs[1:3], part, noise[1:3]), expected[1:3])


def test_sampler_config_is_checked():
    with pytest.raises(UserError, match="sampler.workers"):
        SamplerConfig(workers=0)
    with pytest.raises(UserError, match="sampler.max_retries"):
        SamplerConfig(max_retries=-1)
    for algo in ("rl2", "pearl"):
        with pytest.raises(UserError, match=f"{algo} samples in this process"):
            TrainConfig(algo=algo, sampler=SamplerConfig(backend="ray"))


def test_task_slices_cover_every_task_in_order():
    assert task_slices(5, 2) == [(0, 2), (2, 5)] or task_slices(5, 2) == [(0, 3), (3, 5)]
    assert task_slices(2, 4) == [(0, 1), (1, 2)]
    for tasks, workers in [(20, 3), (7, 7), (40, 6)]:
        slices = task_slices(tasks, workers)
        assert slices[0][0] == 0 and slices[-1][1] == tasks
        assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
        assert max(b - a for a, b in slices) - min(b - a for a, b in slices) <= 1


@pytest.mark.parametrize(
    ("env_id", "env_kwargs"),
    [
        (NAV, {}),
        ("MetaRL/Bandit-K5-v0", {}),
        ("MetaRL/TabularMDP-v0", {}),
        ("MetaRL/MW-ML1-reach-v3-v0", {"horizon": 10}),  # its rows sit at offsets a BLAS product rounds by
    ],
)
def test_slices_with_driver_noise_equal_the_whole_round_in_process(env_id, env_kwargs):
    if env_id.startswith("MetaRL/MW-"):
        pytest.importorskip("metaworld")
    sampler, params, tasks = _setup(env_id, env_kwargs, 5, 3)
    workers = [
        SliceSampler(
            {"env_id": env_id, "env_kwargs": env_kwargs, "policy": sampler.policy, "episodes_per_task": 3}, []
        )
        for _ in range(2)
    ]
    for round_seed in (11, 12):  # the second round reuses each slice's engine with new tasks
        tasks = sample_tasks(sampler.env, 5, round_seed)
        expected = sampler.sample(params, tasks, round_seed, torch.Generator().manual_seed(round_seed))
        gen = torch.Generator().manual_seed(round_seed)
        horizon = int(sampler.env.unwrapped.horizon)
        noise = torch.stack([sampler.policy.action_noise((5, 3), gen) for _ in range(horizon)])
        parts = [
            worker.run(
                params, rows, tasks[rows[0] : rows[1]], round_seed, noise[:, rows[0] : rows[1]], None, 0
            )
            for worker, rows in zip(workers, task_slices(5, 2), strict=True)
        ]
        got = Episodes(
            *(
                torch.cat([getattr(p, f) for p in parts])
                for f in ("observations", "actions", "rewards", "mask")
            )
        )
        _assert_same(got, dataclasses.replace(expected, successes=None))


# --- on a Ray instance started by the tests ---------------------------------------------------------------
try:
    import ray
except ImportError:  # the ray extra is not installed: the tests below skip
    ray = None


def test_no_cluster_at_the_address_is_a_one_line_user_error():
    if ray is None:
        pytest.skip("needs the ray extra (pip install 'metarl[ray]')")
    from metarl.agents.ray_sampler import connect

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if ray.is_initialized():
        pytest.skip("Ray is already up in this process")
    with pytest.raises(
        UserError, match=r"no Ray cluster at 127\.0\.0\.1:\d+.*ray start --head.*sampler.address=null"
    ):
        connect(f"127.0.0.1:{port}")


def test_train_refuses_an_unreachable_address_before_making_a_run_directory(tmp_path, capsys):
    pytest.importorskip("ray")
    from metarl.cli import main

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_dir = tmp_path / "run"
    argv = ["train", "--run-dir", str(run_dir), "sampler.backend=ray", f"sampler.address=127.0.0.1:{port}"]
    assert main(argv) == 2
    assert f"no Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def ray_instance():
    if ray is None:
        pytest.skip("needs the ray extra (pip install 'metarl[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _ray_sampler(sampler, workers=2, **kwargs):
    from metarl.agents.ray_sampler import RaySampler

    return RaySampler(
        sampler.env_id,
        sampler.env_kwargs,
        sampler.policy,
        sampler.episodes_per_task,
        workers=workers,
        **kwargs,
    )


def _both(local, distributed, params, tasks, seed):
    gen_local, gen_ray = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    expected = local.sample(params, tasks, seed, gen_local)
    got = distributed.sample(params, tasks, seed, gen_ray)
    _assert_same(got, expected)
    assert torch.equal(gen_local.get_state(), gen_ray.get_state())  # the next draws agree too


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "num_tasks", "episodes"),
    [
        (NAV, {"horizon": 20}, 5, 3),
        ("MetaRL/HalfCheetahVel-v0", {"horizon": 10}, 2, 1),
        ("MetaRL/MW-ML1-reach-v3-v0", {"horizon": 10}, 2, 2),  # 39-float observations: unaligned task rows
    ],
)
def test_ray_sampler_equals_in_process_sampler_bit_for_bit(
    ray_instance, env_id, env_kwargs, num_tasks, episodes
):
    if env_id.startswith("MetaRL/HalfCheetah"):
        pytest.importorskip("mujoco")
    if env_id.startswith("MetaRL/MW-"):
        pytest.importorskip("metaworld")
    local, params, tasks = _setup(env_id, env_kwargs, num_tasks, episodes)
    distributed = _ray_sampler(local)
    try:
        for seed in (3, 4):  # two rounds: the actors' engines are reused with new tasks
            _both(local, distributed, params, sample_tasks(local.env, num_tasks, seed), seed)
    finally:
        distributed.close()


def test_one_maml_trpo_iteration_on_ray_equals_local(ray_instance):
    config = TrainConfig(
        env=NAV,
        env_kwargs={"horizon": 15},
        meta_batch_size=3,
        episodes_per_task=2,
        policy=PolicyConfig(hidden_sizes=[8]),
        torch_threads=1,
    )
    local = MAMLTRPO(config)
    distributed = MAMLTRPO(dataclasses.replace(config, sampler=SamplerConfig(backend="ray", workers=2)))
    try:
        scalars_local, scalars_ray = local.meta_iteration(0), distributed.meta_iteration(0)
    finally:
        distributed.sampler.close()
    timing = {k for k in scalars_local if "second" in k or k.startswith("time/")}
    assert {k: v for k, v in scalars_local.items() if k not in timing} == {
        k: v for k, v in scalars_ray.items() if k not in timing
    }
    for a, b in zip(local.policy.parameters(), distributed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("algo", "adaptation"), [("openai-es", "none"), ("es-maml", "es"), ("es-maml", "pg")]
)
def test_one_es_iteration_on_ray_equals_local(ray_instance, algo, adaptation):
    # the whole population (perturbations x tasks x adaptation candidates) goes through the sampler's rounds
    config = TrainConfig(
        algo=algo,
        env=NAV,
        env_kwargs={"horizon": 10},
        meta_batch_size=2,
        episodes_per_task=2,
        policy=PolicyConfig(hidden_sizes=[8]),
        es=ESConfig(pairs=3, adaptation_pairs=2, adaptation=adaptation),
        torch_threads=1,
    )
    local = ALGORITHMS[algo](config)
    distributed = ALGORITHMS[algo](
        dataclasses.replace(config, sampler=SamplerConfig(backend="ray", workers=2))
    )
    try:
        scalars_local, scalars_ray = local.meta_iteration(0), distributed.meta_iteration(0)
    finally:
        distributed.sampler.close()
    timing = {k for k in scalars_local if "second" in k}
    assert {k: v for k, v in scalars_local.items() if k not in timing} == {
        k: v for k, v in scalars_ray.items() if k not in timing
    }
    for a, b in zip(local.policy.parameters(), distributed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_worker_killed_mid_round_is_replaced_and_the_numbers_do_not_change(ray_instance):
    local, params, tasks = _setup(NAV, {"horizon": 20}, 4, 2)
    distributed = _ray_sampler(local, max_retries=2)
    try:
        victim, killed = distributed.pids()[0], []

        def kill_first_worker(sampler):
            if not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        distributed.round_hook = kill_first_worker
        for seed in (5, 6):  # if the kill lands after the slice returned, the next round meets the dead actor
            _both(local, distributed, params, sample_tasks(local.env, 4, seed), seed)
        assert distributed.retries >= 1
        assert victim not in distributed.pids()
    finally:
        distributed.close()


def test_max_retries_then_a_clear_error(ray_instance):
    from metarl.agents.ray_sampler import WorkerLost

    local, params, tasks = _setup(NAV, {"horizon": 10}, 2, 1)
    distributed = _ray_sampler(local, max_retries=1)
    try:
        pids = distributed.pids()  # the round's first actors, killed once their slices are submitted
        distributed.round_hook = lambda _: [os.kill(pid, signal.SIGKILL) for pid in pids]
        original = distributed._new_actor

        def doomed_actor():  # every replacement dies before it can run its slice
            actor = original()
            os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
            return actor

        distributed._new_actor = doomed_actor
        with pytest.raises(WorkerLost, match="max_retries=1"):
            distributed.sample(params, tasks, 0, torch.Generator().manual_seed(0))
    finally:
        distributed.close()


def test_slices_that_end_earlier_than_the_round_are_padded_as_in_process(ray_instance):
    """Goals at the start position end their episodes at the first step (a still policy), far goals run to the
    horizon: a slice of early finishers is re-run as long as the round, and a round that ends early everywhere
    leaves the generator where the in-process sampler leaves it."""
    from metarl.envs.navigation import GoalTask

    local, params, _ = _setup(NAV, {"horizon": 12}, 4, 2)
    still = {n: torch.zeros_like(p) for n, p in params.items()}
    still["log_std"] = torch.full_like(
        params["log_std"], -10.0
    )  # actions ~1e-5: a goal at 0 is reached at once
    home, far = GoalTask(goal_x=0.0, goal_y=0.0), GoalTask(goal_x=0.4, goal_y=-0.4)
    distributed = _ray_sampler(local)
    try:
        for tasks in ([far, far, home, home], [home, home, far, far], [home, home, home, home]):
            expected = local.sample(still, tasks, 9, torch.Generator().manual_seed(9))
            steps = 1 if far not in tasks else 12
            lengths = torch.tensor([[12.0 if task == far else 1.0] * 2 for task in tasks])
            assert expected.rewards.shape[2] == steps and torch.equal(expected.mask.sum(-1), lengths)
            _both(local, distributed, still, tasks, 9)
    finally:
        distributed.close()


def test_more_workers_than_the_cluster_has_cpus_is_a_user_error(ray_instance):
    local, _, _ = _setup(NAV, {"horizon": 5}, 2, 1)
    distributed = _ray_sampler(local, workers=3)
    with pytest.raises(UserError, match="sampler.workers=3 needs 3 CPUs but the Ray cluster has 2"):
        distributed.pids()


def test_a_worker_that_cannot_import_the_env_module_is_a_user_error(ray_instance):
    local, params, tasks = _setup(NAV, {"horizon": 5}, 2, 1)
    distributed = _ray_sampler(local, imports=["no_such_module_of_envs"])
    try:
        with pytest.raises(UserError, match="worker could not start .*no_such_module_of_envs"):
            distributed.sample(params, tasks, 0, torch.Generator().manual_seed(0))
        assert distributed.retries == 0
    finally:
        distributed.close()

"""TaskVectorEnv equals Gymnasium's SyncVectorEnv over the single envs: same seeds and actions give the same
observations, rewards, flags and infos (tasks, final observations), in both autoreset modes, with fixed and
with resampled tasks; plus ``gym.make_vec`` through the vector entry point, partial resets and errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.navigation import GoalTask
from metarl.envs.registration import ENV_SPECS
from metarl.envs.vector import TaskVectorEnv
from metarl.envs.wrappers import RandomTaskWrapper
from metarl.errors import UserError

NUM_ENVS, HORIZON, STEPS, SEED = 6, 5, 16, 7
ANALYTIC_IDS = ["MetaRL/Navigation2D-v0", "MetaRL/Bandit-K5-v0", "MetaRL/TabularMDP-v0"]
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]


def _kwargs(env_id: str) -> dict:
    if ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco"):
        pytest.importorskip("mujoco")
    return {"horizon": HORIZON}


def _actions(space: gym.spaces.Space, seed: int) -> list[np.ndarray]:
    """Random actions; for Navigation2D, sub-env 0 walks onto the goal (0.05, 0) of the fixed-task runs."""
    space.seed(seed)
    actions = [space.sample() for _ in range(STEPS)]
    if isinstance(space, gym.spaces.Box) and space.shape == (NUM_ENVS, 2):
        for a in actions:
            a[0] = [0.025, 0.0]
    return actions


def _assert_same(ours, reference, path="") -> None:
    """Recursive equality of step results: arrays (object arrays element-wise), dicts, scalars."""
    if isinstance(reference, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(reference), path
        for k, (a, b) in enumerate(zip(ours, reference, strict=True)):
            _assert_same(a, b, f"{path}[{k}]")
    elif isinstance(reference, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(reference), f"{path}: {sorted(ours)}"
        for key in reference:
            _assert_same(ours[key], reference[key], f"{path}/{key}")
    elif isinstance(reference, np.ndarray) and reference.dtype == object:
        assert ours.shape == reference.shape, path
        for a, b in zip(ours, reference, strict=True):
            _assert_same(a, b, path)
    elif isinstance(reference, np.ndarray):
        assert ours.shape == reference.shape and ours.dtype == reference.dtype, f"{path}: {ours.dtype}"
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-9, err_msg=path)
    else:
        assert ours == reference, f"{path}: {ours!r} != {reference!r}"


def _run_both(ours: gym.vector.VectorEnv, reference: SyncVectorEnv, actions) -> int:
    """Steps both, asserting equal results; returns how many sub-env episodes ended."""
    _assert_same(ours.reset(seed=SEED), reference.reset(seed=SEED))
    ended = 0
    for step_actions in actions:
        result, expected = ours.step(step_actions), reference.step(step_actions)
        _assert_same(result, expected)
        ended += int(np.sum(expected[2] | expected[3]))
    return ended


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("env_id", [*ANALYTIC_IDS, "MetaRL/HalfCheetahVel-v0"])
def test_resampled_tasks_equal_sync_vector_env_of_wrapped_single_envs(env_id, mode):
    kwargs = _kwargs(env_id)
    ours = gym.make_vec(env_id, num_envs=NUM_ENVS, autoreset_mode=mode, **kwargs)
    assert isinstance(ours, TaskVectorEnv) and ours.metadata["autoreset_mode"] == mode
    reference = SyncVectorEnv(
        [lambda: RandomTaskWrapper(gym.make(env_id, **kwargs)) for _ in range(NUM_ENVS)], autoreset_mode=mode
    )
    assert ours.single_observation_space == reference.single_observation_space
    assert ours.observation_space == reference.observation_space
    assert ours.action_space == reference.action_space
    ended = _run_both(ours, reference, _actions(ours.action_space, seed=1))
    assert ended >= NUM_ENVS * 2  # every sub-env went through autoresets, each on a new task
    ours.close()


def test_resampled_physics_tasks_swap_the_models_of_the_copies():
    env_id, kwargs = "MetaRL/HopperRandParams-v0", _kwargs("MetaRL/HopperRandParams-v0")
    ours = gym.make_vec(env_id, num_envs=3, **kwargs)
    reference = SyncVectorEnv([lambda: RandomTaskWrapper(gym.make(env_id, **kwargs)) for _ in range(3)])
    ended = _run_both(ours, reference, _actions(ours.action_space, seed=4)[:12])
    assert ended >= 6
    ours.close()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_fixed_tasks_and_early_terminations_equal_sync_vector_env(mode):
    env_id, kwargs = "MetaRL/Navigation2D-v0", {"horizon": 8}
    tasks = [GoalTask(0.05, 0.0), GoalTask(-0.3, 0.2), GoalTask(0.0, 0.4)]
    per_task = NUM_ENVS // len(tasks)
    ours = TaskVectorEnv(env_id, NUM_ENVS, tasks=tasks, autoreset_mode=mode, **kwargs)
    reference = SyncVectorEnv(
        [lambda k=k: gym.make(env_id, task=tasks[k // per_task], **kwargs) for k in range(NUM_ENVS)],
        autoreset_mode=mode,
    )
    actions = _actions(ours.action_space, seed=2)
    _assert_same(ours.reset(seed=SEED), reference.reset(seed=SEED))
    terminated_at = []
    for t, step_actions in enumerate(actions):
        result = ours.step(step_actions)
        _assert_same(result, reference.step(step_actions))
        if result[2][0]:
            terminated_at.append(t)
    # sub-env 0 reaches its goal before the horizon, then starts again from the origin
    assert terminated_at and terminated_at[0] < 8
    assert ours.tasks == [t for t in tasks for _ in range(per_task)]


def test_generic_engine_gives_the_same_vector_env():
    env_id, kwargs = "MetaRL/TabularMDP-v0", {"horizon": HORIZON}
    fast = TaskVectorEnv(env_id, NUM_ENVS, **kwargs)
    generic = TaskVectorEnv(env_id, NUM_ENVS, generic=True, **kwargs)
    _assert_same(fast.reset(seed=SEED), generic.reset(seed=SEED))
    for step_actions in _actions(fast.action_space, seed=3):
        _assert_same(fast.step(step_actions), generic.step(step_actions))


def test_tasks_stay_over_autoresets_without_resampling():
    ours = TaskVectorEnv("MetaRL/Bandit-K5-v0", 4, resample_tasks=False, horizon=2)
    _, info = ours.reset(seed=0)
    drawn = list(info["task"])
    assert len(set(drawn)) == 4 and ours.tasks == drawn
    for _ in range(7):  # three autoresets
        ours.step(ours.action_space.sample())
    assert ours.tasks == drawn
    _, info = ours.reset()  # an explicit reset draws new ones
    assert ours.tasks == list(info["task"]) and not set(ours.tasks) & set(drawn)


def test_partial_reset_and_task_option():
    env_id = "MetaRL/Navigation2D-v0"
    ours = TaskVectorEnv(env_id, 4, horizon=50)
    reference = SyncVectorEnv([lambda: RandomTaskWrapper(gym.make(env_id, horizon=50)) for _ in range(4)])
    _assert_same(ours.reset(seed=1), reference.reset(seed=1))
    actions = np.full((4, 2), 0.05, dtype=np.float32)
    _assert_same(ours.step(actions), reference.step(actions))
    mask = np.array([False, True, False, True])
    goal = GoalTask(0.2, 0.1)
    _assert_same(
        ours.reset(seed=10, options={"reset_mask": mask, "task": goal}),
        reference.reset(seed=10, options={"reset_mask": mask.copy(), "task": goal}),
    )
    assert [t == goal for t in ours.tasks] == [False, True, False, True]
    obs, *_ = ours.step(actions)
    np.testing.assert_allclose(obs, [[0.1, 0.1], [0.05, 0.05], [0.1, 0.1], [0.05, 0.05]], atol=1e-7)


def test_same_seed_same_run_and_other_seed_other_tasks():
    def run(seed):
        env = gym.make_vec("MetaRL/Navigation2D-v0", num_envs=3, horizon=3)
        _, info = env.reset(seed=seed)
        out = [env.step(np.full((3, 2), 0.02, dtype=np.float32)) for _ in range(4)]
        return list(info["task"]), [list(o[4]["task"][o[4]["_task"]]) for o in out if "task" in o[4]]

    assert run(5) == run(5)
    assert run(5)[0] != run(6)[0]


def test_errors_name_what_is_wrong():
    with pytest.raises(UserError, match="num_envs=5 must be a positive multiple"):
        TaskVectorEnv("MetaRL/Navigation2D-v0", 5, tasks=[GoalTask(0, 0), GoalTask(0.1, 0)])
    with pytest.raises(UserError, match="goal_x"):
        TaskVectorEnv("MetaRL/Navigation2D-v0", 2, task={"goal_x": 3.0, "goal_y": 0.0})
    with pytest.raises(UserError, match="unknown env id"):
        TaskVectorEnv("MetaRL/Navigation3D-v0", 2)
    with pytest.raises(UserError, match="autoreset_mode"):
        TaskVectorEnv("MetaRL/Navigation2D-v0", 2, autoreset_mode=AutoresetMode.DISABLED)
    env = TaskVectorEnv("MetaRL/Navigation2D-v0", 2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((2, 2)))
    with pytest.raises(UserError, match="reset_mask"):
        env.reset(options={"reset_mask": np.array([True, False])})
    env.reset(seed=0)
    with pytest.raises(UserError, match=r"actions must have shape \(2, 2\)"):
        env.step(np.zeros(2))
    with pytest.raises(UserError, match="goal_y"):
        env.reset(options={"task": {"goal_x": 0.0, "goal_y": float("nan")}})
    fixed = TaskVectorEnv("MetaRL/Navigation2D-v0", 4, tasks=[GoalTask(0, 0), GoalTask(0.1, 0)])
    fixed.reset(seed=0)
    with pytest.raises(UserError, match="whole groups of 2"):
        fixed.reset(options={"task": GoalTask(0.2, 0.2), "reset_mask": np.array([True, False, False, False])})
    fixed.reset(options={"task": GoalTask(0.2, 0.2), "reset_mask": np.array([True, True, False, False])})
    assert fixed.tasks == [GoalTask(0.2, 0.2)] * 2 + [GoalTask(0.1, 0)] * 2

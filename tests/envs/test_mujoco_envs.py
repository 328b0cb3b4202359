"""MuJoCo task distributions: Gymnasium v5 fidelity, task validation, JSON, termination, hidden physics.

(check_env over every registered id lives in test_envs_check_env.py.)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")

import gymnasium as gym  # noqa: E402

import metarl  # noqa: E402, F401  (registers the ids)
from metarl.envs import task_from_dict, task_to_dict  # noqa: E402
from metarl.envs.mujoco.tasks import (  # noqa: E402
    DirectionTask,
    GoalPositionTask,
    HeadingTask,
    PhysicsTask,
    VelocityTask,
)

MUJOCO_IDS = [
    "MetaRL/HalfCheetahVel-v0",
    "MetaRL/HalfCheetahDir-v0",
    "MetaRL/AntVel-v0",
    "MetaRL/AntDir-v0",
    "MetaRL/AntDir2D-v0",
    "MetaRL/AntGoal-v0",
    "MetaRL/HumanoidDir-v0",
    "MetaRL/HopperRandParams-v0",
    "MetaRL/Walker2dRandParams-v0",
]
GYMNASIUM_V5 = {
    "MetaRL/HalfCheetahVel-v0": "HalfCheetah-v5",
    "MetaRL/AntGoal-v0": "Ant-v5",
    "MetaRL/HumanoidDir-v0": "Humanoid-v5",
    "MetaRL/HopperRandParams-v0": "Hopper-v5",
    "MetaRL/Walker2dRandParams-v0": "Walker2d-v5",
}


def make(env_id: str, **kwargs):
    return gym.make(env_id, **kwargs).unwrapped


def make_gymnasium_reference(env_id: str):
    """Gymnasium's own env, without letting MuJoCo >= 3.4's `settotalmass` deprecation warning write
    MUJOCO_LOG.TXT into the working directory."""
    import mujoco

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda message: None)
    try:
        return gym.make(env_id).unwrapped
    finally:
        mujoco.set_mju_user_warning(previous)


def identity_or_sampled_task(env):
    """The unmodified model for rand-params envs (to compare with Gymnasium), else a sampled task."""
    from metarl.envs.mujoco.rand_params import RandParamsEnv, identity_task

    if isinstance(env, RandParamsEnv):
        return identity_task(env)
    env.reset(seed=0)
    return env.sample_tasks(1)[0]


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_spaces_symmetric_and_horizon_truncates(env_id):
    env = make(env_id, horizon=7)
    assert env.horizon == 7 and make(env_id).horizon == 200
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.reset(seed=1)
    truncated = terminated = False
    steps = 0
    while not (truncated or terminated):
        _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        steps += 1
    assert steps == 7 and truncated and not terminated


@pytest.mark.parametrize("env_id", list(GYMNASIUM_V5))
def test_observations_equal_gymnasium_v5(env_id):
    env, reference = make(env_id), make_gymnasium_reference(GYMNASIUM_V5[env_id])
    env.set_task(identity_or_sampled_task(env))
    ctrl_scale = reference.model.actuator_ctrlrange[:, 1]
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    ref_obs, _ = reference.reset(seed=3)
    np.testing.assert_allclose(obs, ref_obs, atol=1e-12)
    for _ in range(25):
        action = rng.uniform(-1, 1, env.action_space.shape)
        obs, _, _, _, info = env.step(action)
        ref_obs, _, _, _, ref_info = reference.step(action * ctrl_scale)
        np.testing.assert_allclose(obs, ref_obs, atol=1e-9)
        assert info["velocity"][0] == pytest.approx(ref_info["x_velocity"], abs=1e-9)


def test_halfcheetah_rewards_follow_the_formulas():
    rng = np.random.default_rng(0)
    for env_id, task in [
        ("MetaRL/HalfCheetahVel-v0", VelocityTask(velocity=1.5)),
        ("MetaRL/HalfCheetahDir-v0", DirectionTask(direction=-1.0)),
    ]:
        env = make(env_id)
        env.set_task(task)
        env.reset(seed=0)
        for _ in range(10):
            x_before = env.data.qpos[0]
            action = rng.uniform(-1, 1, 6)
            _, reward, _, _, _ = env.step(action)
            velocity = (env.data.qpos[0] - x_before) / env.dt
            task_term = -abs(velocity - 1.5) if env_id.endswith("Vel-v0") else -velocity
            assert reward == pytest.approx(task_term - 0.05 * np.sum(action**2), abs=1e-9)


def test_sampling_follows_kwargs_and_seed():
    vel = make("MetaRL/HalfCheetahVel-v0")
    vel.reset(seed=4)
    speeds = np.array([t.velocity for t in vel.sample_tasks(200)])
    assert speeds.min() >= 0 and speeds.max() <= 2 and speeds.max() > 1.9
    wide = make("MetaRL/HalfCheetahVel-v0", velocity_range=(0.0, 3.0))
    wide.reset(seed=4)
    assert max(t.velocity for t in wide.sample_tasks(200)) > 2.5
    again = make("MetaRL/HalfCheetahVel-v0")
    again.reset(seed=4)
    assert [t.velocity for t in again.sample_tasks(5)] == list(speeds[:5])
    goal = make("MetaRL/AntGoal-v0")
    goal.reset(seed=0)
    radii = np.array([math.hypot(t.goal_x, t.goal_y) for t in goal.sample_tasks(300)])
    assert radii.max() <= 3 and np.mean(radii < 3 / math.sqrt(2)) == pytest.approx(0.5, abs=0.1)
    directions = make("MetaRL/AntDir-v0")
    directions.reset(seed=0)
    assert {t.direction for t in directions.sample_tasks(20)} == {-1.0, 1.0}


@pytest.mark.parametrize(
    ("env_id", "kwargs", "task", "field"),
    [
        ("MetaRL/HalfCheetahVel-v0", {}, VelocityTask(velocity=2.5), "velocity"),
        ("MetaRL/AntVel-v0", {}, VelocityTask(velocity=-0.1), "velocity"),
        ("MetaRL/AntGoal-v0", {}, GoalPositionTask(goal_x=2.5, goal_y=2.5), "goal_x"),
        ("MetaRL/AntGoal-v0", {"goal_radius": 1.0}, GoalPositionTask(goal_x=0.0, goal_y=1.5), "goal_y"),
        ("MetaRL/HalfCheetahDir-v0", {}, VelocityTask(velocity=1.0), "DirectionTask"),
    ],
)
def test_out_of_support_tasks_raise_naming_the_field(env_id, kwargs, task, field):
    with pytest.raises(ValueError, match=field):
        make(env_id, **kwargs).set_task(task)


def test_wider_velocity_range_accepts_the_wider_task():
    make("MetaRL/HalfCheetahVel-v0", velocity_range=(0.0, 3.0)).set_task(VelocityTask(velocity=2.5))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: VelocityTask(velocity=float("nan")), "velocity"),
        (lambda: VelocityTask(velocity="fast"), "velocity"),
        (lambda: DirectionTask(direction=0.5), "direction"),
        (lambda: HeadingTask(angle=7.0), "angle"),
        (lambda: GoalPositionTask(goal_x=None, goal_y=0.0), "goal_x"),
        (
            lambda: PhysicsTask(np.ones(2), np.ones((2, 3)), np.array([1.0, -1.0]), np.ones((1, 3))),
            "dof_damping",
        ),
    ],
)
def test_invalid_task_values_raise_naming_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()


def test_physics_task_validated_against_the_model():
    env = make("MetaRL/HopperRandParams-v0")
    env.reset(seed=0)
    task = env.sample_tasks(1)[0]
    wrong_shape = task_to_dict(task) | {"body_mass_scale": [1.0, 1.0]}
    with pytest.raises(ValueError, match="body_mass_scale"):
        env.set_task(task_from_dict(wrong_shape))
    too_large = task_to_dict(task)
    too_large["dof_damping_scale"][0] = 1.3**3.5
    with pytest.raises(ValueError, match="dof_damping_scale"):
        env.set_task(task_from_dict(too_large))
    make("MetaRL/HopperRandParams-v0", log_scale_limit=4.0).set_task(task_from_dict(too_large))


@pytest.mark.parametrize("env_id", MUJOCO_IDS)
def test_tasks_round_trip_through_json(env_id):
    env = make(env_id)
    env.reset(seed=2)
    for task in env.sample_tasks(3):
        restored = task_from_dict(json.loads(json.dumps(task_to_dict(task))))
        assert type(restored) is type(task) and restored == task
        env.set_task(restored)


def test_task_features_describe_the_task():
    assert make("MetaRL/HalfCheetahVel-v0").task_features(VelocityTask(velocity=1.25)).tolist() == [1.25]
    np.testing.assert_allclose(
        make("MetaRL/AntDir2D-v0").task_features(HeadingTask(angle=math.pi / 2)), [0, 1], atol=1e-7
    )
    assert make("MetaRL/AntGoal-v0").task_features(GoalPositionTask(goal_x=1.0, goal_y=-2.0)).tolist() == [
        1.0,
        -2.0,
    ]
    assert make("MetaRL/HopperRandParams-v0").task_features(None) is None


@pytest.mark.parametrize(
    ("env_id", "qpos_index", "value"),
    [
        ("MetaRL/AntVel-v0", 2, 1.5),  # torso z above 1.0
        ("MetaRL/HumanoidDir-v0", 2, 0.6),  # torso z below 1.0
        ("MetaRL/HopperRandParams-v0", 2, 0.5),  # torso angle beyond 0.2
        ("MetaRL/Walker2dRandParams-v0", 1, 0.3),  # height below 0.8
    ],
)
def test_unhealthy_states_terminate(env_id, qpos_index, value):
    env = make(env_id)
    env.reset(seed=0)
    _, _, terminated, _, _ = env.step(np.zeros(env.action_space.shape))
    assert not terminated
    qpos = env.data.qpos.copy()
    qpos[qpos_index] = value
    env.set_state(qpos, np.zeros(env.model.nv))
    _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape))
    assert terminated and not truncated


def test_ant_goal_does_not_terminate_by_default_but_can():
    for kwargs, expected in [({}, False), ({"terminate_when_unhealthy": True}, True)]:
        env = make("MetaRL/AntGoal-v0", **kwargs)
        env.reset(seed=0)
        qpos = env.data.qpos.copy()
        qpos[2] = 1.5
        env.set_state(qpos, np.zeros(env.model.nv))
        assert env.step(np.zeros(8))[2] is expected


@pytest.mark.parametrize("env_id", ["MetaRL/HopperRandParams-v0", "MetaRL/Walker2dRandParams-v0"])
def test_rand_params_change_the_dynamics(env_id):
    env = make(env_id)
    env.reset(seed=0)
    tasks = env.sample_tasks(2)
    actions = np.random.default_rng(0).uniform(-1, 1, (15,) + env.action_space.shape)
    trajectories = []
    for task in [tasks[0], tasks[1], tasks[0]]:
        env.set_task(task)
        env.reset(seed=5)
        trajectories.append(np.array([env.step(a)[0] for a in actions]))
    assert np.abs(trajectories[0] - trajectories[1]).max() > 1e-2  # different physics, different motion
    np.testing.assert_array_equal(trajectories[0], trajectories[2])  # the task fully determines the physics
    scaled = env.model_for_task(tasks[1])
    np.testing.assert_allclose(scaled.body_mass, env._pristine_model.body_mass * tasks[1].body_mass_scale)
    np.testing.assert_allclose(
        scaled.dof_damping, env._pristine_model.dof_damping * tasks[1].dof_damping_scale
    )


def test_import_metarl_without_mujoco():
    code = (
        "import sys; sys.modules['mujoco'] = None\n"
        "import metarl, gymnasium as gym\n"
        "assert 'MetaRL/HalfCheetahVel-v0' in gym.registry\n"
        "try:\n    gym.make('MetaRL/HalfCheetahVel-v0')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "DependencyNotInstalled" in result.stdout and "metarl[mujoco]" in result.stdout

"""metarl.envs.metaworld.fast: the faster helpers compute Meta-World's numbers bit for bit, and metarl's envs
use them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import metarl  # noqa: F401  (registers the ids)

pytest.importorskip("metaworld")
import mujoco  # noqa: E402
from metaworld.env_dict import ALL_V3_ENVIRONMENTS  # noqa: E402
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from metarl.envs.metaworld import fast  # noqa: E402
from metarl.envs.metaworld.sim import make_metaworld_env, native_task  # noqa: E402
from metarl.envs.metaworld.tasks import SPLITS  # noqa: E402


def _rotation_matrix(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix as MuJoCo makes ``xmat``: from a random unit quaternion."""
    quat = rng.normal(size=4)
    matrix = np.zeros(9)
    mujoco.mju_quat2Mat(matrix, quat / np.linalg.norm(quat))
    return matrix.reshape(3, 3)


@pytest.mark.parametrize("noise", [0.0, 1e-13, 1e-6])
def test_quat_from_matrix_is_scipys_bit_for_bit(noise):
    """Rotation matrices, ones within scipy's orthogonality tolerance, and ones scipy orthogonalises first
    (noise 1e-6: handed to scipy), each of scipy's four formulas (largest diagonal entry or trace)."""
    rng = np.random.default_rng(0)
    choices = set()
    for _ in range(3000):
        matrix = _rotation_matrix(rng) + noise * rng.normal(size=(3, 3))
        quat = fast.quat_from_matrix(matrix)
        assert np.array_equal(quat, Rotation.from_matrix(matrix).as_quat())
        choices.add(int(np.argmax([*np.diag(matrix), np.trace(matrix)])))
    assert choices == {0, 1, 2, 3}
    rotation = fast.MatrixQuaternion.from_matrix(matrix)
    rotation.as_quat()[0] = 7.0  # a new array each call, as scipy's
    assert np.array_equal(rotation.as_quat(), Rotation.from_matrix(matrix).as_quat())


def test_quat_from_matrix_leaves_what_is_not_a_rotation_to_scipy():
    with pytest.raises(ValueError, match="Non-positive determinant"):
        fast.quat_from_matrix(np.diag([1.0, 1.0, -1.0]))
    scaled = 0.5 * np.eye(3)
    assert np.array_equal(fast.quat_from_matrix(scaled), Rotation.from_matrix(scaled).as_quat())


def test_metarls_envs_carry_the_fast_helpers_and_metaworlds_do_not():
    ours, theirs = make_metaworld_env("pick-place-v3"), ALL_V3_ENVIRONMENTS["pick-place-v3"]
    assert type(ours).touching_object is fast.touching_object
    assert type(ours)._get_curr_obs_combined_no_goal is fast.current_observation
    assert type(ours)._get_quat_objects.__globals__["Rotation"] is fast.MatrixQuaternion
    assert theirs._get_quat_objects.__globals__["Rotation"] is Rotation
    assert theirs.touching_object is not fast.touching_object
    ours.close()

    class OwnContactTest(theirs):  # a family with its own helper keeps it
        def touching_object(self, object_geom_id):
            return True

    methods = fast.fast_methods(OwnContactTest)
    assert (
        "touching_object" not in methods
        and methods["_get_curr_obs_combined_no_goal"] is fast.current_observation
    )


@pytest.mark.slow
def test_every_family_steps_bit_for_bit_as_metaworlds_own_env():
    """All 50 families (ML45's train and test sets), 120 steps of Meta-World's scripted policy plus noise:
    metarl's env (shared model, the fast helpers) and Meta-World's own env give the same observations, rewards
    and infos bit for bit, and ``touching_object`` agrees with Meta-World's at every step, grasps included."""
    benchmark = gym.make("MetaRL/MW-ML45-v0").unwrapped
    families, grasps = 0, 0
    for split in SPLITS:
        for name in benchmark.families[split]:
            task = native_task(benchmark.task(split, name, 0))
            ours, theirs = make_metaworld_env(name), ALL_V3_ENVIRONMENTS[name]()
            ours.set_task(task)
            theirs.set_task(task)
            obs, obs_ref = ours.reset()[0], theirs.reset()[0]
            assert np.array_equal(obs, obs_ref), name
            try:
                object_geom = theirs.data.geom("objGeom").id
            except KeyError:  # no "objGeom" in this family's model
                object_geom = None
            policy, rng = ENV_POLICY_MAP[name](), np.random.default_rng(1)
            for _ in range(120):
                action = policy.get_action(obs_ref.copy()) + rng.normal(0.0, 0.3, 4)
                obs, reward, _, truncated, info = ours.step(action)
                obs_ref, reward_ref, _, truncated_ref, info_ref = theirs.step(action)
                assert np.array_equal(obs, obs_ref) and reward == reward_ref, name
                assert info == info_ref and truncated == truncated_ref, name
                if object_geom is not None:
                    touching = ours.touching_object(object_geom)
                    assert touching == theirs.touching_object(object_geom), name
                    grasps += touching
            families += 1
            ours.close()
            theirs.close()
    assert families == 50 and grasps > 0

"""Exact, faster versions of the Meta-World helpers a step spends most of its Python time in.

A Meta-World step on one core took about 0.6 ms on ML10's families, of which the physics is about 0.1 ms. The
rest is Meta-World's Python, and more than half of it went to three helpers:

- ``SawyerXYZEnv.touching_object`` (the grasp term of the pick and push rewards) walks ``data.contact`` twice,
  building a Python object per contact: :func:`touching_object` reads the contact list's arrays instead;
- ``Rotation.from_matrix(xmat).as_quat()`` (scipy), the object's quaternion in every observation, whose
  array-API wrapper and checks cost 70-100 µs for one 3x3 matrix: :class:`MatrixQuaternion` does scipy's
  arithmetic on Python floats and hands anything but a clean rotation matrix to scipy;
- ``SawyerXYZEnv._get_curr_obs_combined_no_goal`` (the observation's hand and object part) interleaves the
  objects' positions and quaternions with ``np.split`` and two ``np.hstack`` s per object:
  :func:`current_observation` copies them into place.

All three compute the same floating-point operations in the same order as the code they replace, so episodes are
bit for bit Meta-World's (a test compares every family with Meta-World's own env). They are installed only on
metarl's subclasses of Meta-World's env classes (:func:`metarl.envs.metaworld.sim.make_metaworld_env`); Meta-World's
own classes and modules are left as they are.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from typing import Any

import numpy as np
from metaworld.sawyer_xyz_env import SawyerXYZEnv
from scipy.spatial.transform import Rotation

# scipy's Rotation.from_matrix checks the Gram matrix against the identity with np.isclose(atol=1e-12,
# rtol=1e-5) and orthogonalises (SVD) what fails. Matrices within these tighter bounds pass that check whatever
# the rounding of the Gram matrix; anything else goes to scipy, which then decides exactly as it always does.
_OFF_DIAGONAL_BOUND = 0.5e-12
_DIAGONAL_BOUND = 0.5e-5


def quat_from_matrix(matrix: Any) -> np.ndarray:
    """``Rotation.from_matrix(matrix).as_quat()`` for one 3x3 matrix, bit for bit (scalar last).

    A rotation matrix (positive determinant, orthonormal rows within scipy's tolerance) is converted with
    scipy's own algorithm (Markley 2008: the largest of the diagonal and the trace picks the formula, then the
    quaternion is normalised), the same operations in the same order on Python floats. Anything else (a
    matrix scipy would orthogonalise first or reject) is passed to scipy.
    """
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = np.asarray(matrix, dtype=float).tolist()
    gram = (
        (m00 * m00 + m01 * m01 + m02 * m02) - 1.0,
        (m10 * m10 + m11 * m11 + m12 * m12) - 1.0,
        (m20 * m20 + m21 * m21 + m22 * m22) - 1.0,
    )
    cross = (
        m00 * m10 + m01 * m11 + m02 * m12,
        m00 * m20 + m01 * m21 + m02 * m22,
        m10 * m20 + m11 * m21 + m12 * m22,
    )
    determinant = (
        m00 * (m11 * m22 - m12 * m21) - m01 * (m10 * m22 - m12 * m20) + m02 * (m10 * m21 - m11 * m20)
    )
    if (
        not determinant > 0.5
        or max(abs(g) for g in gram) > _DIAGONAL_BOUND
        or max(abs(c) for c in cross) > _OFF_DIAGONAL_BOUND
    ):
        return Rotation.from_matrix(matrix).as_quat()
    m = ((m00, m01, m02), (m10, m11, m12), (m20, m21, m22))
    trace = m00 + m11 + m22
    decision = (m00, m11, m22, trace)
    choice = 0
    for index in (1, 2, 3):  # the first maximum, as scipy's _argmax4
        if decision[index] > decision[choice]:
            choice = index
    quat = [0.0, 0.0, 0.0, 0.0]
    if choice != 3:
        i = choice
        j = (i + 1) % 3
        k = (j + 1) % 3
        quat[i] = 1 - trace + 2 * m[i][i]
        quat[j] = m[j][i] + m[i][j]
        quat[k] = m[k][i] + m[i][k]
        quat[3] = m[k][j] - m[j][k]
    else:
        quat[0] = m21 - m12
        quat[1] = m02 - m20
        quat[2] = m10 - m01
        quat[3] = 1 + trace
    norm = math.sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3])
    if norm == 0:  # pragma: no cover - not a rotation; scipy says so
        return Rotation.from_matrix(matrix).as_quat()
    return np.array([quat[0] / norm, quat[1] / norm, quat[2] / norm, quat[3] / norm])


class MatrixQuaternion:
    """What Meta-World's envs use of scipy's ``Rotation``: ``from_matrix(matrix).as_quat()``, through
    :func:`quat_from_matrix`."""

    __slots__ = ("_quat",)

    def __init__(self, quat: np.ndarray) -> None:
        self._quat = quat

    @classmethod
    def from_matrix(cls, matrix: Any) -> MatrixQuaternion:
        """The rotation of a 3x3 matrix."""
        return cls(quat_from_matrix(matrix))

    def as_quat(self) -> np.ndarray:
        """The quaternion, scalar last (a new array)."""
        return self._quat.copy()


def touching_object(self, object_geom_id: int) -> bool:
    """``SawyerXYZEnv.touching_object``: whether both gripper pads push on the object (positive contact
    force), summing the same forces in the same contact order, from the contact list's arrays."""
    left_pad, right_pad = _pad_geoms(self)
    contact = self.data.contact
    geom1, geom2, address = contact.geom1, contact.geom2, contact.efc_address
    force = self.data.efc_force
    with_object = (geom1 == object_geom_id) | (geom2 == object_geom_id)
    left = sum(
        force[address[i]] for i in np.flatnonzero(with_object & ((geom1 == left_pad) | (geom2 == left_pad)))
    )
    right = sum(
        force[address[i]] for i in np.flatnonzero(with_object & ((geom1 == right_pad) | (geom2 == right_pad)))
    )
    return left > 0 and right > 0


def current_observation(self) -> np.ndarray:
    """``SawyerXYZEnv._get_curr_obs_combined_no_goal``: the hand's position, the gripper's opening (finger
    distance / 0.1, clipped to [0, 1]) and each object's position and quaternion, zero-padded to 14 entries; the
    same values, copied into place (Meta-World's own code runs for an odd layout)."""
    pos_hand = self.get_endeff_pos()
    gripper = np.linalg.norm(self.data.body("rightclaw").xpos - self.data.body("leftclaw").xpos)
    gripper = min(max(gripper / 0.1, 0.0), 1.0)  # np.clip's value, NaN included
    positions, quaternions = self._get_pos_objects(), self._get_quat_objects()
    objects = len(positions) // 3
    if (
        len(positions) != 3 * objects
        or len(quaternions) != 4 * objects
        or 7 * objects > self._obs_obj_max_len
    ):
        return SawyerXYZEnv._get_curr_obs_combined_no_goal(self)
    padded = np.zeros(self._obs_obj_max_len)
    interleaved = padded[: 7 * objects].reshape(objects, 7)
    interleaved[:, :3] = np.reshape(positions, (objects, 3))
    interleaved[:, 3:] = np.reshape(quaternions, (objects, 4))
    return np.concatenate((pos_hand, (gripper,), padded))


def _pad_geoms(env: Any) -> tuple[int, int]:
    pads = env.__dict__.get("_metarl_pad_geoms")
    if pads is None:
        pads = env.__dict__["_metarl_pad_geoms"] = (
            env.data.geom("leftpad_geom").id,
            env.data.geom("rightpad_geom").id,
        )
    return pads


def fast_methods(env_cls: type) -> dict[str, Any]:
    """The methods to put on a subclass of the Meta-World env class ``env_cls``: :func:`touching_object` and
    :func:`current_observation` where the class has Meta-World's own, and each of ``env_cls``'s methods that
    calls scipy's ``Rotation``, re-made with :class:`MatrixQuaternion` in its place (the same code object and
    closure; only the name ``Rotation`` resolves differently)."""
    methods: dict[str, Any] = {
        name: replacement
        for name, replacement in (
            ("touching_object", touching_object),
            ("_get_curr_obs_combined_no_goal", current_observation),
        )
        if inspect.getattr_static(env_cls, name)
        is getattr(SawyerXYZEnv, name)  # not overridden by the family
    }
    for name, attr in inspect.getmembers_static(env_cls):
        if (
            isinstance(attr, types.FunctionType)
            and attr.__globals__.get("Rotation") is Rotation
            and "Rotation" in attr.__code__.co_names
        ):
            methods[name] = _with_globals(attr, {**attr.__globals__, "Rotation": MatrixQuaternion})
    return methods


def _with_globals(function: types.FunctionType, globals_: dict[str, Any]) -> types.FunctionType:
    copy = types.FunctionType(
        function.__code__, globals_, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    return functools.update_wrapper(copy, function)

"""Gymnasium's and Stable-Baselines3's env checkers pass on every registered id, with an explicit allow-list
of the warnings we expect; any other warning fails the test."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import pytest
from conftest import env_ids_under_test
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

import metarl  # noqa: F401  (registers the ids)
from metarl.envs.registration import ENV_SPECS

# Each entry: (pattern, ids it is allowed for (None: any id), why it is expected).
ALLOWED_WARNINGS = [
    (
        r"A Box observation space (maximum|minimum) value is -?infinity",
        None,
        "Navigation2D and the MuJoCo robots observe unbounded positions and velocities",
    ),
    (
        r"A Box observation space maximum and minimum values are equal",
        {i for i in env_ids_under_test() if i.startswith("MetaRL/MW-")},
        "Meta-World's ML observation space bounds the hidden goal's three entries to [0, 0], as metaworld does",
    ),
    (
        r"use a symmetric and normalized Box action space",
        {"MetaRL/Navigation2D-v0"},
        "SB3's advice; Navigation2D keeps the MAML paper's action bounds [-0.1, 0.1]",
    ),
]


def _is_mujoco(env_id: str) -> bool:
    return ENV_SPECS[env_id][0].startswith("metarl.envs.mujoco")


def _make(env_id: str) -> gym.Env:
    if _is_mujoco(env_id):
        pytest.importorskip("mujoco")
    return gym.make(env_id)


def _allowed(message: str, env_id: str) -> bool:
    return any(
        re.search(pattern, message) and (ids is None or env_id in ids) for pattern, ids, _ in ALLOWED_WARNINGS
    )


def _unexpected(records: list[warnings.WarningMessage], env_id: str) -> list[str]:
    return [str(r.message) for r in records if not _allowed(str(r.message), env_id)]


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_gymnasium_check_env(env_id):
    env = _make(env_id)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        gymnasium_check_env(env.unwrapped, skip_render_check=True)
    assert _unexpected(records, env_id) == []
    env.close()


@pytest.mark.parametrize("env_id", env_ids_under_test())
def test_stable_baselines3_check_env(env_id):
    sb3_env_checker = pytest.importorskip("stable_baselines3.common.env_checker")
    env = _make(env_id)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        sb3_env_checker.check_env(env.unwrapped, warn=True)
    assert _unexpected(records, env_id) == []
    env.close()


def test_allow_list_rejects_other_warnings():
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        warnings.warn("the observation is not within the observation space", UserWarning, stacklevel=1)
        warnings.warn("A Box observation space maximum value is infinity.", UserWarning, stacklevel=1)
        warnings.warn("We recommend you to use a symmetric and normalized Box action space", stacklevel=1)
    assert _unexpected(records, "MetaRL/Navigation2D-v0") == [
        "the observation is not within the observation space"
    ]
    assert len(_unexpected(records, "MetaRL/Bandit-K5-v0")) == 2  # the action advice is Navigation2D's only

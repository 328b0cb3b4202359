"""Registers every metarl task distribution with Gymnasium (runs on ``import metarl``)."""

from __future__ import annotations

import difflib

import gymnasium as gym

from metarl.envs.metaworld.names import ML1_ENV_NAMES
from metarl.envs.plugins import load_entry_points
from metarl.errors import UserError

# id -> (entry point, kwargs). Envs truncate themselves at `horizon`, so no TimeLimit is added.
ENV_SPECS: dict[str, tuple[str, dict]] = {
    "MetaRL/Navigation2D-v0": ("metarl.envs.navigation:Navigation2DEnv", {}),
    "MetaRL/Bandit-K5-v0": ("metarl.envs.bandit:BernoulliBanditEnv", {"num_arms": 5}),
    "MetaRL/Bandit-K10-v0": ("metarl.envs.bandit:BernoulliBanditEnv", {"num_arms": 10}),
    "MetaRL/Bandit-K50-v0": ("metarl.envs.bandit:BernoulliBanditEnv", {"num_arms": 50}),
    "MetaRL/TabularMDP-v0": ("metarl.envs.tabular_mdp:TabularMDPEnv", {}),
    # MuJoCo locomotion (extra `metarl[mujoco]`); the modules import mujoco only when an env is made.
    "MetaRL/HalfCheetahVel-v0": ("metarl.envs.mujoco.half_cheetah:HalfCheetahVelEnv", {}),
    "MetaRL/HalfCheetahDir-v0": ("metarl.envs.mujoco.half_cheetah:HalfCheetahDirEnv", {}),
    "MetaRL/AntVel-v0": ("metarl.envs.mujoco.ant:AntVelEnv", {}),
    "MetaRL/AntDir-v0": ("metarl.envs.mujoco.ant:AntDirEnv", {}),
    "MetaRL/AntDir2D-v0": ("metarl.envs.mujoco.ant:AntDir2DEnv", {}),
    "MetaRL/AntGoal-v0": ("metarl.envs.mujoco.ant:AntGoalEnv", {}),
    "MetaRL/HumanoidDir-v0": ("metarl.envs.mujoco.humanoid:HumanoidDirEnv", {}),
    "MetaRL/HopperRandParams-v0": ("metarl.envs.mujoco.rand_params:HopperRandParamsEnv", {}),
    "MetaRL/Walker2dRandParams-v0": ("metarl.envs.mujoco.rand_params:Walker2dRandParamsEnv", {}),
    # Meta-World (extra `metarl[metaworld]`); metaworld is imported only when an env is made.
    **{
        f"MetaRL/MW-ML1-{name}-v0": (
            "metarl.envs.metaworld.env:MetaWorldEnv",
            {"benchmark": "ML1", "env_name": name},
        )
        for name in ML1_ENV_NAMES
    },
    "MetaRL/MW-ML10-v0": ("metarl.envs.metaworld.env:MetaWorldEnv", {"benchmark": "ML10"}),
    "MetaRL/MW-ML45-v0": ("metarl.envs.metaworld.env:MetaWorldEnv", {"benchmark": "ML45"}),
}


#: the module whose attributes are the entry points of the ids (see :mod:`metarl.envs.entry_points`)
ENTRY_POINTS = "metarl.envs.entry_points"
VECTOR_PREFIX = "vector/"


def register_envs() -> None:
    """Register all ids in :data:`ENV_SPECS` (idempotent).

    Their entry points (:mod:`metarl.envs.entry_points`) make the class of :data:`ENV_SPECS` and accept
    ``task=``; their vector entry points build a :class:`metarl.envs.vector.TaskVectorEnv` over the batched
    engine, so ``gym.make_vec(id, num_envs=N)`` steps all sub-envs in one call.
    """
    for env_id, (_, kwargs) in ENV_SPECS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=f"{ENTRY_POINTS}:{env_id}",
                vector_entry_point=f"{ENTRY_POINTS}:{VECTOR_PREFIX}{env_id}",
                kwargs=kwargs,
                disable_env_checker=False,
            )


def registered_ids() -> list[str]:
    """All metarl env ids, sorted."""
    return sorted(ENV_SPECS)


def unknown_env_message(env_id: str) -> str:
    """A one-line error for an unknown id with the closest known ids and how to make a user's env known."""
    known = sorted(set(registered_ids()) | set(gym.registry))
    close = difflib.get_close_matches(env_id, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"unknown env id {env_id!r}.{hint} Run `metarl envs` to list the task distributions; a task "
        "distribution of your own must be registered first: pass `--import MODULE` (the module that calls "
        "gymnasium.register) or declare a `metarl.envs` entry point (docs/custom-envs.md)."
    )


def check_registered(env_id: str) -> None:
    """Load the ``metarl.envs`` entry points if ``env_id`` is not registered yet; raise if it still is not.

    Raises:
        UserError: the id is unknown (the message suggests close ids and how to register one's own).
    """
    if env_id not in gym.registry:
        load_entry_points()
    if env_id not in gym.registry:
        raise UserError(unknown_env_message(env_id))

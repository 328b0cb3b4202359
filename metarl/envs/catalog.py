"""Human-readable listing of the registered task distributions."""

from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from metarl.envs.entry_points import TaskEnvCreator
from metarl.envs.plugins import user_env_ids
from metarl.envs.registration import registered_ids


def _env_class(env_id: str) -> type:
    """The env class of ``env_id``: read from metarl's entry point without making the env (a Meta-World env
    takes a second to make), else from an env made by ``gym.make``."""
    entry_point = gym.registry[env_id].entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    if isinstance(creator, type):  # registered with the env class itself
        return creator
    if isinstance(creator, TaskEnvCreator):
        return creator.env_class
    return type(gym.make(env_id).unwrapped)


def _summary(env_id: str) -> str:
    try:
        env_class = _env_class(env_id)
    except Exception as exc:  # noqa: BLE001  (an optional dependency may be missing)
        return f"unavailable: {exc}"
    doc = (env_class.__doc__ or "").strip().splitlines()
    for line in (raw.strip() for raw in doc):
        if line.startswith("Task distribution:"):
            return line.removeprefix("Task distribution:").strip()
    return doc[0] if doc else ""


def describe_envs() -> str:
    """A table of metarl's ids, then those of entry points and ``--import``, with their task distributions."""
    rows = [(env_id, _summary(env_id)) for env_id in registered_ids()]
    rows += [(env_id, f"{_summary(env_id)} [{source}]") for env_id, source in user_env_ids().items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'id':<{width}}  task distribution", f"{'-' * width}  {'-' * 17}"]
    lines += [f"{env_id:<{width}}  {summary}" for env_id, summary in rows]
    return "\n".join(lines)

"""Human-readable listing of the registered task distributions."""

from __future__ import annotations

import gymnasium as gym

from metarl.envs.plugins import user_env_ids
from metarl.envs.registration import registered_ids


def _summary(env_id: str) -> str:
    try:
        env = gym.make(env_id)
    except Exception as exc:  # noqa: BLE001  (an optional dependency may be missing)
        return f"unavailable: {exc}"
    doc = (type(env.unwrapped).__doc__ or "").strip().splitlines()
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

"""Human-readable listing of the registered task distributions and a quick throughput check."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np

from metarl.envs.batched import make_batched
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
    """A table of every registered id with its task distribution."""
    rows = [(env_id, _summary(env_id)) for env_id in registered_ids()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'id':<{width}}  task distribution", f"{'-' * width}  {'-' * 17}"]
    lines += [f"{env_id:<{width}}  {summary}" for env_id, summary in rows]
    return "\n".join(lines)


def _random_actions(space: gym.Space, batch_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return space.start + rng.integers(space.n, size=batch_shape)
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high, size=batch_shape + space.shape).astype(space.dtype)
    raise TypeError(f"random actions for {type(space).__name__} spaces are not supported")


def rollout_throughput(
    env_id: str = "MetaRL/Navigation2D-v0", num_tasks: int = 20, episodes_per_task: int = 20, seed: int = 0
) -> str:
    """Run one batched round of random-action episodes and report env-steps per second."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    tasks = env.unwrapped.sample_tasks(num_tasks)
    benv = make_batched(env_id, tasks, episodes_per_task, seed=seed)
    rng = np.random.default_rng(seed)
    benv.reset()
    start = time.perf_counter()
    while not benv.done.all():
        benv.step(_random_actions(benv.action_space, benv.batch_shape, rng))
    elapsed = time.perf_counter() - start
    return (
        f"{env_id}: {num_tasks} tasks x {episodes_per_task} episodes, {benv.elapsed_steps} steps each, "
        f"batched engine {type(benv).__name__}: {num_tasks * episodes_per_task * benv.elapsed_steps / elapsed:,.0f} env-steps/s"
    )

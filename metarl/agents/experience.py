"""One axis for both families of meta-RL agents: return on a held-out task against episodes of experience on it.

* Gradient-based learners (MAML-TRPO, Reptile-PG, ProMP) fine-tune on ``E`` episodes per step, so their return
  after step ``j`` sits at ``j * E`` episodes of experience (``0`` before any step).
* Context-based learners (RL², PEARL) play episode after episode on the task with their memory or posterior
  carried across: their ``j``-th episode (from 0) sits at ``j``.

``metarl evaluate`` writes this axis as each learner's ``experience`` in ``eval.json``; ``metarl compare``
(:mod:`metarl.agents.compare`) puts several runs of one env on it, on the same held-out tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from metarl.envs import Task
from metarl.training import mean_ci

EXPERIENCE_LABEL = "episodes of experience on the task"


@runtime_checkable
class ContextAgent(Protocol):
    """What a context-based agent offers the evaluation (RL², PEARL)."""

    experience_episodes: int
    """Episodes its evaluation plays on each held-out task by default (e.g. RL²'s trial length)."""

    def experience_returns(self, tasks: list[Task], episodes: int, seed: int) -> np.ndarray:
        """``(len(tasks), episodes)``: the return of the ``j``-th episode the agent plays on each task, having
        experienced that task's earlier ``j`` episodes. No learning; the same numbers for the same ``seed``."""
        ...


def is_context_agent(agent: object) -> bool:
    """Whether ``agent`` adapts from experience (:class:`ContextAgent`) rather than by gradient steps."""
    return isinstance(agent, ContextAgent)


def gradient_experience(steps: int, episodes_per_step: int) -> list[int]:
    """Episodes of experience before a gradient learner's return after steps ``0..steps``."""
    return [j * episodes_per_step for j in range(steps + 1)]


def learner_entry(
    per_task: np.ndarray, experience: Sequence[int], steps: Sequence[int] | None = None
) -> dict[str, Any]:
    """One learner of ``eval.json``: mean and 95% CI half-width per point, the per-task values, and its axes.

    Args:
        per_task: ``(tasks, points)`` returns.
        experience: episodes of experience before each point.
        steps: a gradient learner's adaptation step of each point (None for a context-based learner).
    """
    per_task = np.asarray(per_task, dtype=np.float64)
    if per_task.ndim != 2 or per_task.shape[1] != len(experience):
        raise ValueError(f"per_task of shape {per_task.shape} does not match {len(experience)} points")
    stats = [mean_ci(per_task[:, j]) for j in range(per_task.shape[1])]
    entry: dict[str, Any] = {}
    if steps is not None:
        entry["steps"] = list(steps)
    entry.update(
        {
            "experience": [int(x) for x in experience],
            "mean": [m for m, _ in stats],
            "ci": [c for _, c in stats],
            "per_task": per_task.tolist(),
        }
    )
    return entry

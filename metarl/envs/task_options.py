"""Tasks through Gymnasium's own API: ``gym.make(id, task=...)`` and ``env.reset(options={"task": ...})``.

A task may be given as a task object or as its dict form: :func:`metarl.envs.task_to_dict`'s output, or the
fields alone (``{"goal_x": 0.1, "goal_y": -0.2}``), which are read as the env's own task type. Either way the
env validates it, and a bad task raises :class:`metarl.errors.UserError` naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from metarl.envs.base import Task, TaskEnv, task_from_dict
from metarl.errors import UserError


def coerce_task(env: TaskEnv, value: Task | Mapping[str, Any]) -> Task:
    """``value`` as a valid task of ``env`` (a task, or its dict form with or without ``"type"``)."""
    if isinstance(value, Mapping):
        value = _task_from_mapping(env, value)
    env.validate_task(value)
    return value


def _task_from_mapping(env: TaskEnv, data: Mapping[str, Any]) -> Task:
    if "type" in data:
        return task_from_dict(dict(data))
    task_type = env.task_type
    names = [f.name for f in dataclasses.fields(task_type)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"task field {unknown[0]!r} is not a field of {task_type.__name__} (fields: {names})")
    missing = [name for name in names if name not in data]
    if missing:
        raise UserError(f"task field {missing[0]!r} of {task_type.__name__} is missing (fields: {names})")
    return task_type(**data)


def task_for_reset(env: TaskEnv, options: Mapping[str, Any] | None) -> Task:
    """Set ``options["task"]`` on ``env`` if given, and return the task of the episode being reset."""
    if options is not None and options.get("task") is not None:
        env.set_task(coerce_task(env, options["task"]))
    return env.get_task()

"""Gymnasium entry points of the metarl ids, so tasks and the batched engines travel through the standard API.

* ``gym.make(id, task=...)``: the env starts on ``task`` (a task or its dict form, validated);
* ``gym.make_vec(id, num_envs=N)``: a :class:`metarl.envs.vector.TaskVectorEnv` over the id's batched engine.

Gymnasium names entry points by ``"module:attribute"`` strings (a spec holding a callable cannot be written
to JSON), and calls a vector entry point with ``num_envs`` and the env kwargs but not the id. So this module
answers ids as attribute names (a PEP 562 module ``__getattr__``): ``"metarl.envs.entry_points:<id>"`` makes
the single env of a metarl id and ``"metarl.envs.entry_points:vector/<id>"`` the vector env of any registered
id whose env follows the task API.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from typing import Any

from metarl.envs.base import Task, TaskEnv
from metarl.envs.registration import ENV_SPECS, VECTOR_PREFIX
from metarl.envs.task_options import coerce_task
from metarl.envs.vector import TaskVectorEnv


class TaskEnvCreator:
    """Makes the env of one class, started on ``task`` when one is given.

    Args:
        class_path: ``"module:ClassName"`` of a :class:`TaskEnv`; the module is imported on first use (so the
            MuJoCo envs import mujoco only when made).
    """

    def __init__(self, class_path: str) -> None:
        self.class_path = class_path

    @property
    def env_class(self) -> type[TaskEnv]:
        """The env class."""
        module, name = self.class_path.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def metadata(self) -> dict[str, Any]:
        """The class's metadata, where ``gym.make`` looks up the render modes."""
        return self.env_class.metadata

    def __call__(self, task: Task | Mapping[str, Any] | None = None, **env_kwargs: Any) -> TaskEnv:
        env = self.env_class(**env_kwargs)
        if task is not None:
            env.set_task(coerce_task(env, task))
        return env

    def __repr__(self) -> str:
        return f"TaskEnvCreator({self.class_path!r})"


def __getattr__(name: str) -> Any:
    if name.startswith(VECTOR_PREFIX):
        return functools.partial(TaskVectorEnv, name.removeprefix(VECTOR_PREFIX))
    if name in ENV_SPECS:
        return TaskEnvCreator(ENV_SPECS[name][0])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

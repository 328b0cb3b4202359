"""Meta-World's envs as metarl uses them: its task records, and envs of one task that share one ``MjModel``.

The module of the package that imports ``metaworld`` first (:mod:`~metarl.envs.metaworld.fast`, which it imports,
also needs it): without it, importing it (what making an
env does) raises a one-line :class:`~metarl.errors.UserError`.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import pickle
from typing import Any

import numpy as np

from metarl.envs.metaworld.tasks import MetaWorldTask
from metarl.errors import UserError

try:
    import mujoco
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.types import Task as MetaWorldNativeTask
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test without metaworld
    raise UserError(
        f"the Meta-World task distributions need the `metaworld` package ({exc.name} is missing): "
        'pip install "metarl[metaworld]"'
    ) from None

from metarl.envs.metaworld.fast import fast_methods  # noqa: E402  (needs metaworld, checked above)


def native_task(task: MetaWorldTask) -> MetaWorldNativeTask:
    """The ``metaworld.types.Task`` of ``task``: the data Meta-World's ML benchmarks pickle for a goal (the env
    class, its reset vector, the goal hidden from the observation)."""
    data = {
        "rand_vec": np.array(task.rand_vec),
        "env_cls": ALL_V3_ENVIRONMENTS[task.env_name],
        "partially_observable": True,
    }
    return MetaWorldNativeTask(env_name=task.env_name, data=pickle.dumps(data))


# --- Meta-World env objects that share one MjModel ------------------------------------------------------
# Parsing a Meta-World XML takes ~0.4 s and its MjModel is ~20 MB. The batched engine runs many copies of a
# task, so copies of one task share one model (its task-dependent fields are written identically by every
# copy's reset) and only own an MjData. Meta-World's own constructor runs unchanged; only the model comes
# from here instead of the XML.
_SHARED_MODEL: contextvars.ContextVar[Any] = contextvars.ContextVar("metarl_metaworld_model", default=None)


@functools.cache
def _sharing_class(env_cls: type) -> type:
    """A subclass of a Meta-World env class that takes its MjModel from :data:`_SHARED_MODEL` when set, with
    the exact, faster helpers of :mod:`metarl.envs.metaworld.fast`."""

    def _initialize_simulation(self):
        model = _SHARED_MODEL.get()
        if model is None:
            return env_cls._initialize_simulation(self)
        return model, mujoco.MjData(model)

    # The same name: Meta-World reports a task's family by its class name (``task_name``).
    methods = {**fast_methods(env_cls), "_initialize_simulation": _initialize_simulation}
    return type(env_cls.__name__, (env_cls,), methods)


@functools.lru_cache(maxsize=16)
def _template(env_name: str):
    """A Meta-World env of ``env_name`` made from its XML and never stepped: its model is copied for new tasks."""
    return _sharing_class(ALL_V3_ENVIRONMENTS[env_name])()


def preload_model(env_name: str) -> None:
    """Parse the model of ``env_name`` now, for :func:`new_model` (and processes forked after this) to copy."""
    _template(env_name)


def new_model(env_name: str):
    """A fresh copy of the MjModel of ``env_name``'s Meta-World env."""
    return copy.copy(_template(env_name).model)


def make_metaworld_env(env_name: str, model: Any = None, render_mode: str | None = None):
    """A Meta-World env of ``env_name`` (its own model, or ``model`` shared with other envs of the same task)."""
    token = _SHARED_MODEL.set(model)
    try:
        return _sharing_class(ALL_V3_ENVIRONMENTS[env_name])(render_mode=render_mode)
    finally:
        _SHARED_MODEL.reset(token)


def class_name(env_name: str) -> str:
    """The class name of the Meta-World env ``env_name`` (what its envs report as ``task_name``)."""
    return ALL_V3_ENVIRONMENTS[env_name].__name__

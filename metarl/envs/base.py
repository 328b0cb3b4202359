"""The task API: a ``gymnasium.Env`` that is also a distribution over tasks.

Every task distribution in metarl (and any a user writes) subclasses :class:`TaskEnv`::

    env = gymnasium.make("MetaRL/Navigation2D-v0")
    tasks = env.unwrapped.sample_tasks(40)     # drawn from env.np_random: seeded, reproducible
    env.unwrapped.set_task(tasks[0])
    env.unwrapped.get_task()

A task is a small frozen dataclass (subclass of :class:`Task`) naming its parameters; it validates
itself on construction and converts to and from JSON with :func:`task_to_dict` / :func:`task_from_dict`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np

from metarl.errors import UserError


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class of task values. Subclasses are frozen dataclasses and validate in ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields (arrays become nested lists)."""
        return task_to_dict(self)


TaskT = TypeVar("TaskT", bound=Task)

_TASK_TYPES: dict[str, type[Task]] = {}


def _check_task_class(cls: Any, what: str) -> None:
    """A :class:`Task` subclass decorated with ``@dataclass(frozen=True)``, else a UserError naming ``what``."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise UserError(f"{what} must be a subclass of metarl.envs.Task, got {cls!r}")
    if "__dataclass_params__" not in cls.__dict__ or not cls.__dataclass_params__.frozen:
        raise UserError(
            f"{what} {cls.__name__} must be a frozen dataclass: decorate it with @dataclass(frozen=True) "
            "(tasks are hashable values that runs log and reload)"
        )


def register_task_type(cls: type[TaskT]) -> type[TaskT]:
    """Class decorator: make a task type reloadable from JSON by its class name.

    Put it above ``@dataclass(frozen=True)``. A run writes its tasks as ``{"type": ClassName, ...}`` and reads
    them back through this registry, so the class name must be unique.

    Raises:
        UserError: ``cls`` is not a frozen :class:`Task` dataclass, or another class has the same name.
    """
    _check_task_class(cls, "a registered task type")
    known = _TASK_TYPES.get(cls.__name__)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise UserError(
            f"task type name {cls.__name__!r} is already registered by {known.__module__}.{known.__qualname__}; "
            f"rename {cls.__module__}.{cls.__qualname__} (runs reload tasks by class name)"
        )
    _TASK_TYPES[cls.__name__] = cls
    return cls


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def task_to_dict(task: Task) -> dict[str, Any]:
    """``{"type": ClassName, field: value, ...}`` with only JSON types."""
    out: dict[str, Any] = {"type": type(task).__name__}
    for f in dataclasses.fields(task):
        out[f.name] = _jsonable(getattr(task, f.name))
    return out


def task_from_dict(data: dict[str, Any]) -> Task:
    """Rebuild a task written by :func:`task_to_dict` (its type must be registered)."""
    data = dict(data)
    name = data.pop("type", None)
    if name not in _TASK_TYPES:
        raise UserError(f"unknown task type {name!r}; known types: {sorted(_TASK_TYPES)}")
    return _TASK_TYPES[name](**data)


# --- validation helpers: each raises a ValueError that names the field -------------------------


def check_real(field: str, value: Any) -> float:
    """``value`` as a finite float, else ValueError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise UserError(f"task field '{field}' must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise UserError(f"task field '{field}' must be finite, got {value}")
    return value


def check_range(field: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float within ``[low, high]``, else ValueError naming ``field`` and the range."""
    value = check_real(field, value)
    if not low <= value <= high:
        raise UserError(
            f"task field '{field}' = {value} is outside the distribution's support [{low}, {high}]"
        )
    return value


def check_interval(name: str, value: Any) -> tuple[float, float]:
    """``value`` as a pair ``(low, high)`` of finite reals with ``low <= high`` (a constructor argument such as
    ``velocity_range``), else a one-line error naming ``name``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise UserError(f"{name} must be (low, high) with finite low <= high, got {value!r}")
    return low, high


def check_array(
    field: str, value: Any, shape: Sequence[int] | None = None, low: float = -math.inf, high: float = math.inf
) -> np.ndarray:
    """``value`` as a finite float64 array (of ``shape``) within ``[low, high]``, else ValueError."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"task field '{field}' must be an array of numbers, got {value!r}") from exc
    if shape is not None and arr.shape != tuple(shape):
        raise UserError(f"task field '{field}' must have shape {tuple(shape)}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"task field '{field}' must be finite, got non-finite entries")
    if arr.size and (arr.min() < low or arr.max() > high):
        raise UserError(
            f"task field '{field}' has entries outside the distribution's support [{low}, {high}]"
        )
    arr.setflags(write=False)
    return arr


MAX_HORIZON = 10**6  # steps of one episode: a longer one is a hang, not an experiment


def _counting_reset(reset: Any) -> Any:
    """Wrap a subclass's ``reset`` so the episode's step count starts at 0."""

    @functools.wraps(reset)
    def counted_reset(self: TaskEnv, *args: Any, **kwargs: Any) -> Any:
        self._require_base_init()
        self._elapsed_steps = 0
        return reset(self, *args, **kwargs)

    counted_reset.__wrapped_by_task_env__ = True  # type: ignore[attr-defined]
    return counted_reset


def _truncating_step(step: Any) -> Any:
    """Wrap a subclass's ``step`` so it counts steps and truncates at ``horizon``.

    Only the outermost call counts: a subclass's ``step`` may call ``super().step(action)``.
    """

    @functools.wraps(step)
    def counted_step(self: TaskEnv, action: Any) -> Any:
        if self.__dict__.get("_inside_step"):
            return step(self, action)
        self._require_base_init()
        self._inside_step = True
        try:
            obs, reward, terminated, truncated, info = step(self, action)
        finally:
            self._inside_step = False
        self._elapsed_steps += 1
        return obs, reward, terminated, bool(truncated) or self._elapsed_steps >= self.horizon, info

    counted_step.__wrapped_by_task_env__ = True  # type: ignore[attr-defined]
    return counted_step


class TaskEnv(gym.Env, Generic[TaskT]):
    """A Gymnasium env over a distribution of tasks.

    Subclasses set ``task_type`` (a frozen :class:`Task` dataclass decorated with
    :func:`register_task_type`), call ``super().__init__(horizon)`` in ``__init__``, implement
    :meth:`_sample_task` (one task from the generator it is given) and ``reset`` / ``step`` as any Gymnasium
    env. They may override :meth:`validate_task` to check support that depends on constructor arguments,
    :meth:`_on_task_set` to react to a new task, :meth:`task_features` for an oracle policy, and
    :meth:`make_batched` to provide a fast batched engine.

    The episode length is the base class's job: a subclass's ``reset`` and ``step`` are wrapped when the
    class is defined, so ``reset`` starts the count at 0 and ``step`` returns ``truncated=True`` once
    ``horizon`` steps were taken (or earlier, if the subclass's own ``step`` says so). During ``step``,
    :attr:`elapsed_steps` is the number of steps taken before it. Mistakes in this contract raise a
    :class:`~metarl.errors.UserError` when the class is defined or first instantiated
    (``docs/custom-envs.md`` lists them).

    Args:
        horizon: steps per episode before truncation.
        render_mode: one of ``metadata["render_modes"]``, or ``None``.
    """

    task_type: ClassVar[type[Task]]
    horizon: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        task_type = cls.__dict__.get("task_type")
        if task_type is not None:
            _check_task_class(task_type, f"{cls.__name__}.task_type")
            if _TASK_TYPES.get(task_type.__name__) is not task_type:
                raise UserError(
                    f"{cls.__name__}.task_type {task_type.__name__} is not registered: decorate it with "
                    "@metarl.envs.register_task_type (runs reload their tasks by type name)"
                )
        for name, wrap in (("reset", _counting_reset), ("step", _truncating_step)):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__wrapped_by_task_env__", False):
                setattr(cls, name, wrap(method))

    def __init__(self, horizon: int, render_mode: str | None = None) -> None:
        cls = type(self)
        if getattr(cls, "task_type", None) is None:
            raise UserError(
                f"{cls.__name__} has no task_type: set the class attribute `task_type = YourTask` "
                "(a frozen dataclass subclassing metarl.envs.Task)"
            )
        if cls._sample_task is TaskEnv._sample_task:
            raise UserError(
                f"{cls.__name__} does not implement _sample_task(self, rng) -> {cls.task_type.__name__}"
            )
        if (
            isinstance(horizon, bool)
            or not isinstance(horizon, int | np.integer)
            or not 1 <= horizon <= MAX_HORIZON
        ):
            raise UserError(f"horizon must be an integer in [1, {MAX_HORIZON}], got {horizon!r}")
        modes = list(self.metadata.get("render_modes", []))
        if render_mode is not None and render_mode not in modes:
            raise UserError(f"{cls.__name__} supports render_mode in {modes} (or None), got {render_mode!r}")
        self.render_mode = render_mode
        self.horizon = int(horizon)
        self._task: TaskT | None = None
        self._elapsed_steps = 0

    def _require_base_init(self) -> None:
        if "_elapsed_steps" not in self.__dict__:
            raise UserError(
                f"{type(self).__name__}.__init__ must call super().__init__(horizon) before the env is used"
            )

    @property
    def elapsed_steps(self) -> int:
        """Steps taken in the current episode (during ``step``: before this one)."""
        return self._elapsed_steps

    # --- the task API -------------------------------------------------------------------------
    def sample_tasks(self, n: int) -> list[TaskT]:
        """Draw ``n`` tasks from the distribution using ``self.np_random`` (seed it with ``reset(seed=...)``)."""
        if not isinstance(n, int | np.integer) or n < 0:
            raise UserError(f"number of tasks must be a non-negative integer, got {n!r}")
        return [self._sample_task(self.np_random) for _ in range(int(n))]

    def sample_held_out_tasks(self, n: int) -> list[TaskT]:
        """Draw ``n`` tasks for meta-testing (what ``metarl evaluate`` adapts to) with ``self.np_random``.

        By default they come from the same distribution as :meth:`sample_tasks`. A benchmark with a separate
        test set overrides this to draw from it (Meta-World's ML1/ML10/ML45 test tasks).
        """
        return self.sample_tasks(n)

    def set_task(self, task: TaskT) -> None:
        """Switch the env to ``task`` (takes effect at the next ``reset``)."""
        self.validate_task(task)
        self._task = task
        self._on_task_set(task)

    def get_task(self) -> TaskT:
        """The current task (a default one is drawn on first use if none was set)."""
        if self._task is None:
            self.set_task(self._sample_task(self.np_random))
        assert self._task is not None
        return self._task

    def validate_task(self, task: Any) -> None:
        """Raise ``ValueError`` if ``task`` is not a task of this distribution."""
        if not isinstance(task, self.task_type):
            raise UserError(
                f"{type(self).__name__} expects a {self.task_type.__name__}, got {type(task).__name__}: {task!r}"
            )

    # --- hooks for subclasses -----------------------------------------------------------------
    def _sample_task(self, rng: np.random.Generator) -> TaskT:
        """One task drawn from ``rng`` (subclasses must implement it)."""
        raise NotImplementedError

    def _on_task_set(self, task: TaskT) -> None:
        """Called after a valid task is set."""

    def task_features(self, task: TaskT) -> np.ndarray | None:
        """The task as a feature vector for an oracle policy that is told the task, or ``None``."""
        return None

    def make_batched(self, tasks: Sequence[TaskT], episodes_per_task: int, seed: int | None):
        """A fast batched engine for these tasks, or ``None`` to use the generic fallback."""
        return None


def sample_tasks(env: gym.Env, num_tasks: int, seed: int, held_out: bool = False) -> list[Task]:
    """Draw ``num_tasks`` tasks from the env's distribution with its ``np_random`` seeded by ``seed``.

    The generator is replaced directly rather than through ``reset(seed=...)``, whose side effects (an env
    drawing a default task on its first reset) would make the tasks depend on the env's history.
    ``held_out`` draws meta-test tasks (``TaskEnv.sample_held_out_tasks``: a benchmark's test set, if it has one).
    """
    env.unwrapped.np_random = np.random.default_rng(int(seed))
    draw = env.unwrapped.sample_held_out_tasks if held_out else env.unwrapped.sample_tasks
    return list(draw(int(num_tasks)))

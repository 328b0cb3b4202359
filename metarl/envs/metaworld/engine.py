"""Batched Meta-World engine: one Meta-World env per copy, the copies split among processes.

Meta-World computes its observations and rewards in Python, per env, so the engine runs Meta-World's own
``reset`` and ``step`` on every copy (the single env's numbers by construction). That Python holds the GIL, so
threads cannot run two copies at once: on 2 cores, two threads stepped ML10's families 10% slower than one.
The engine therefore splits the copies into contiguous slices, one per usable core: the calling process steps
the first slice and a worker process each of the others, all at once. Actions, observations, rewards and
success flags travel through shared memory; a pipe per worker carries the command (load tasks, reset, step,
close) and the reply. Workers are forked where the platform allows (they inherit the parsed models and the
imports, so starting one takes milliseconds) and spawned elsewhere.

The copies of one task in one slice share one ``MjModel`` (see :func:`metarl.envs.metaworld.sim.make_metaworld_env`)
and own an ``MjData``, so a meta-batch of 20 tasks x 10 episodes holds about 20 models, not 200.
"""

from __future__ import annotations

import multiprocessing
import traceback
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from metarl.envs.base import TaskEnv
from metarl.envs.batched import BatchedEnv, available_cores
from metarl.envs.metaworld.sim import class_name, make_metaworld_env, native_task, new_model, preload_model
from metarl.envs.metaworld.tasks import MetaWorldTask
from metarl.memory import release_freed_memory

_COMMANDS = ("load", "reset", "step", "close")


class MetaWorldBatchedEnv(BatchedEnv):
    """Steps every copy of a Meta-World task distribution in one call (see the module docstring).

    ``info["success"]`` of :meth:`step` is Meta-World's per-step success flag, ``(tasks, episodes)`` floats.

    Args:
        env: a :class:`~metarl.envs.metaworld.env.MetaWorldEnv` of the benchmark (validates the tasks; it is
            not stepped).
        tasks: one task per row of the batch.
        episodes_per_task: copies per task.
        seed: base seed (Meta-World's episodes are deterministic given task and actions; kept for the contract).
        num_workers: processes stepping the copies, this one included (default: the number of usable cores;
            1 steps every copy in this process).
    """

    def __init__(
        self,
        env: TaskEnv,
        tasks: Sequence[MetaWorldTask],
        episodes_per_task: int,
        seed: int | None = None,
        num_workers: int | None = None,
    ) -> None:
        super().__init__(tasks, episodes_per_task, env.observation_space, env.action_space, env.horizon, seed)
        for task in self.tasks:
            env.validate_task(task)
        self.num_workers = max(1, min(int(num_workers or available_cores()), self.num_copies))
        bounds = [
            (int(part[0]), int(part[-1]) + 1)
            for part in np.array_split(range(self.num_copies), self.num_workers)
        ]
        shapes = {
            "obs": (self.num_copies, *env.observation_space.shape),
            "reward": (self.num_copies,),
            "success": (self.num_copies,),
            "actions": (self.num_copies, *env.action_space.shape),
            "mask": (self.num_copies,),
        }
        if self.num_workers == 1:
            context = buffers = None
            self._arrays = {name: np.zeros(shape) for name, shape in shapes.items()}
        else:
            context = _process_context()
            buffers = {
                name: (context.RawArray("d", int(np.prod(shape))), shape) for name, shape in shapes.items()
            }
            self._arrays = _views(buffers)
            for name in {task.env_name for task in self.tasks}:
                preload_model(name)  # forked workers inherit the parsed models
        self._local = CopySlice(*bounds[0], self._arrays)
        self._workers = [_Worker(context, start, stop, buffers) for start, stop in bounds[1:]]
        self._finalizer = weakref.finalize(self, _stop_workers, list(self._workers))
        self._open = True
        self._load_tasks(range(self.num_tasks))

    # --- BatchedEnv hooks --------------------------------------------------------------------------
    def _load_tasks(self, rows: Sequence[int]) -> None:
        self._run("load", [(self.tasks[row], self.copies_of_row(row)) for row in rows])

    def _reset(self, seeds: list[int | None], mask: np.ndarray) -> np.ndarray:
        self._arrays["mask"][:] = mask.reshape(-1)
        self._run("reset")
        return self._arrays["obs"].reshape(self.batch_shape + self._arrays["obs"].shape[1:]).copy()

    def _step(
        self, actions: np.ndarray, active: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        self._arrays["actions"][:] = actions.reshape(self._arrays["actions"].shape)
        self._arrays["mask"][:] = active.reshape(-1)
        self._run("step")
        arrays = self._arrays
        return (
            arrays["obs"].reshape(self.batch_shape + arrays["obs"].shape[1:]).copy(),
            arrays["reward"].reshape(self.batch_shape).copy(),
            np.zeros(self.batch_shape, dtype=bool),  # Meta-World never terminates an episode
            {"success": arrays["success"].reshape(self.batch_shape).copy()},
        )

    def _run(self, command: str, argument: Any = None) -> None:
        """Run ``command`` on every slice at once: the workers' first, then this process's, then wait."""
        self._check_open()
        for worker in self._workers:
            worker.send(command, argument)
        try:
            self._local.run(command, argument)
        finally:
            errors = [error for error in (worker.receive() for worker in self._workers) if error]
        if errors:
            raise RuntimeError(f"a Meta-World worker process failed:\n{errors[0]}")

    def close(self) -> None:
        """Stop the workers and free the Meta-World envs (the engine cannot be stepped afterwards)."""
        if not self._open:
            return
        try:
            self._run("close")
        finally:
            self._open = False
            self._finalizer()
            release_freed_memory()

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(
                "this batched engine was closed; build a new one with metarl.envs.make_batched"
            )


class CopySlice:
    """The Meta-World envs of copies ``start .. stop - 1`` of an engine, and what each command does to them.

    Results go to the engine's arrays (indexed by copy), which are shared memory when the slice is stepped by a
    worker process.
    """

    def __init__(self, start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
        self.start, self.stop = start, stop
        self.arrays = arrays
        self.envs: dict[int, Any] = {}

    def run(self, command: str, argument: Any = None) -> None:
        """Carry out one of the engine's commands (``load``, ``reset``, ``step``, ``close``)."""
        if command not in _COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        getattr(self, command)(argument)

    def load(self, assignment: list[tuple[MetaWorldTask, range]]) -> None:
        """Put the copies of each ``(task, copies of its row)`` of ``assignment`` that are in this slice on the
        task. The copies of a row share a model (rows never do); a family change makes new envs."""
        for task, row_copies in assignment:
            copies = [k for k in row_copies if self.start <= k < self.stop]
            if not copies:
                continue
            first = self.envs.get(copies[0])
            if first is None or first.task_name != class_name(task.env_name):
                model = new_model(task.env_name)
                for k in copies:
                    self.envs[k] = make_metaworld_env(task.env_name, model)
            native = native_task(task)
            for k in copies:
                self.envs[k].set_task(native)

    def reset(self, _: Any = None) -> None:
        """Reset the copies of this slice whose ``mask`` entry is set."""
        obs = self.arrays["obs"]
        for k in self._masked():
            obs[k] = self.envs[k].reset()[0]

    def step(self, _: Any = None) -> None:
        """Step the copies of this slice whose ``mask`` entry is set with their ``actions``."""
        obs, reward, success, actions = (
            self.arrays[name] for name in ("obs", "reward", "success", "actions")
        )
        for k in self._masked():
            obs[k], reward[k], _, _, info = self.envs[k].step(actions[k])
            success[k] = info["success"]

    def close(self, _: Any = None) -> None:
        """Close every env of this slice."""
        for env in self.envs.values():
            env.close()
        self.envs.clear()

    def _masked(self) -> np.ndarray:
        return self.start + np.flatnonzero(self.arrays["mask"][self.start : self.stop])


# --- worker processes --------------------------------------------------------------------------------
def _process_context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _views(buffers: dict[str, tuple[Any, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    return {
        name: np.frombuffer(raw, dtype=np.float64).reshape(shape) for name, (raw, shape) in buffers.items()
    }


def _serve(connection, start: int, stop: int, buffers) -> None:
    """A worker process: carry out the engine's commands on one slice until ``close``."""
    copies = CopySlice(start, stop, _views(buffers))
    while True:
        try:
            command, argument = connection.recv()
        except EOFError:  # the engine's process ended
            return
        try:
            copies.run(command, argument)
            connection.send(None)
        except Exception:  # noqa: BLE001 - the engine raises it, with this traceback
            connection.send(traceback.format_exc())
        if command == "close":
            connection.close()
            return


class _Worker:
    """A worker process stepping one slice of the copies."""

    def __init__(self, context, start: int, stop: int, buffers) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_serve,
            args=(child, start, stop, buffers),
            name=f"metaworld-copies-{start}-{stop}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self._sent = False  # whether the last command reached the worker

    def send(self, command: str, argument: Any) -> None:
        try:
            self.connection.send((command, argument))
            self._sent = True
        except OSError:  # the worker is gone; receive() says so
            self._sent = False

    def receive(self) -> str | None:
        """The worker's reply: None, or the traceback of its error (or of its death)."""
        try:
            if self._sent:
                return self.connection.recv()
        except (EOFError, OSError):
            pass
        self.process.join(timeout=1.0)
        return (
            f"worker {self.process.name} (pid {self.process.pid}) died with exit code {self.process.exitcode}"
        )


def _stop_workers(workers: list[_Worker]) -> None:
    """Tell the workers to close (again, if their engine was closed) and wait for them to exit; end any still
    running after 5 s. (A pipe's end of file is no signal here: forked processes inherit each other's pipes.)"""
    for worker in workers:
        if worker.process.is_alive():
            worker.send("close", None)
        worker.connection.close()
    for worker in workers:
        worker.process.join(timeout=5.0)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join()

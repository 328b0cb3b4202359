"""The batched sampler spread over Ray actors: the same episodes, bit for bit, from several processes or machines.

A sampling round's tasks are split into contiguous slices, one per actor. Every actor keeps its own batched
engine (made once, its tasks set anew each round) and steps only its slice; the stacked parameters go into the
object store once per round and the episodes come back in task order. Nothing random happens on an actor: the
env copies of task ``i`` are seeded ``seed + i * episodes_per_task + j`` as in process, and the driver draws the
whole round's action noise from the caller's generator (:meth:`~metarl.agents.policies.MLPPolicy.action_noise`),
so the numbers do not depend on how the tasks are split, and a slice whose actor died is re-run on a fresh
actor with the same result. Results, logs and checkpoints stay in the driver's process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from metarl.agents.config import TrainConfig
from metarl.agents.episodes import Episodes
from metarl.agents.policies import MLPPolicy
from metarl.agents.sampler import BatchedSampler
from metarl.envs import Task
from metarl.envs.plugins import import_env_modules
from metarl.errors import UserError


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError(
            "sampler.backend=ray needs Ray: pip install 'metarl[ray]' (or set sampler.backend=local)"
        ) from None
    return ray


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (``None``: start one in this process) unless Ray is already up.

    Returns:
        Whether this call started or joined Ray (and so whoever closes the sampler should shut it down).

    Raises:
        UserError: no cluster answers at ``address``.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        _check_reachable(address)  # Ray itself retries an address nobody listens at for minutes
    try:
        if address is None:
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"no Ray cluster at {address} ({reason}): start one with `ray start --head` or set "
            "sampler.address=null"
        ) from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a ``HOST:PORT`` that accepts no connection."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"sampler.address must be null, auto or HOST:PORT (e.g. 10.0.0.1:6379), got {address!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UserError(
            f"no Ray cluster at {address} ({exc.strerror or type(exc).__name__}): start one with `ray start "
            "--head` or set sampler.address=null"
        ) from None


def _last_error_line(message: str) -> str:
    """The last ``SomeError: ...`` line of a remote traceback (or its last line)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line or "Exception:" in line]
    return (errors or lines or ["unknown error"])[-1]


def task_slices(num_tasks: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` rows of ``num_tasks`` tasks over at most ``workers`` actors, sizes within 1."""
    bounds = np.linspace(0, num_tasks, min(workers, num_tasks) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class SliceSampler:
    """What runs inside one actor: a :class:`~metarl.agents.sampler.BatchedSampler` and one engine reused across
    rounds, stepping a slice of a round's tasks with noise drawn by the driver.

    Args:
        sampler_args: the driver sampler's constructor arguments (:meth:`RaySampler.worker_args`).
        imports: modules that register the env (the run's ``imports``), imported before it is made.
    """

    def __init__(self, sampler_args: dict[str, Any], imports: Sequence[str]) -> None:
        torch.set_num_threads(1)
        import_env_modules(imports)
        self.sampler = BatchedSampler(**sampler_args)

    def pid(self) -> int:
        """The actor's process id (a test kills it by this)."""
        return os.getpid()

    @torch.no_grad()
    def run(
        self,
        params: Mapping[str, torch.Tensor],
        rows: tuple[int, int],
        tasks: Sequence[Task],
        seed: int,
        noise: torch.Tensor,
        features: torch.Tensor | None,
        min_steps: int,
    ) -> Episodes:
        """Episodes of ``tasks``, rows ``[start, stop)`` of the round; ``params`` holds every task's parameters,
        ``seed`` the round's base seed and ``noise`` the action noise of these rows, ``(horizon, rows, E, ...)``."""
        start, stop = rows
        sampler = self.sampler
        seed = int(seed) + start * sampler.episodes_per_task  # the seeds these copies have in the whole round
        engine, first_obs = sampler.engine_for(tasks, seed)
        policy = sampler.policy
        round_tasks = next(iter(params.values())).shape[0]

        def act(obs: torch.Tensor, t: int) -> torch.Tensor:
            # The whole round's batch with these rows in place (zeros elsewhere): a BLAS product's rounding
            # depends on its operands' memory alignment, so these rows get the in-process round's actions bit
            # for bit only at the offsets they have there.
            whole = obs.new_zeros((round_tasks, *obs.shape[1:]))
            whole[start:stop] = obs
            whole_noise = noise.new_zeros((round_tasks, *noise.shape[2:]))
            whole_noise[start:stop] = noise[t]
            return policy.act_with_noise(whole, params, whole_noise)[start:stop]

        return sampler.rollout(engine, first_obs, features, act, min_steps)


class WorkerLost(RuntimeError):
    """A slice's actor kept dying: more than ``sampler.max_retries`` re-runs in one sampling round."""


class RaySampler(BatchedSampler):
    """:class:`~metarl.agents.sampler.BatchedSampler`'s interface and numbers, with the tasks of a round split over
    ``workers`` Ray actors.

    Args:
        env_id, env_kwargs, policy, episodes_per_task, task_features, normalized_actions: as for
            :class:`~metarl.agents.sampler.BatchedSampler`.
        workers: actors (one CPU each); a round of fewer tasks uses fewer.
        address: the Ray cluster (``None``: start Ray in this process; ``"auto"``; ``"HOST:PORT"``), joined at the
            first round.
        max_retries: re-runs of dead actors' slices allowed per round.
        imports: modules the actors import to find the env (a run's ``imports``).
    """

    def __init__(
        self,
        env_id: str,
        env_kwargs: Mapping[str, Any] | None,
        policy: MLPPolicy,
        episodes_per_task: int,
        task_features: bool = False,
        normalized_actions: bool = True,
        *,
        workers: int = 2,
        address: str | None = None,
        max_retries: int = 3,
        imports: Sequence[str] = (),
    ) -> None:
        super().__init__(env_id, env_kwargs, policy, episodes_per_task, task_features, normalized_actions)
        self.workers = int(workers)
        if address not in (None, "auto"):
            _check_reachable(address)  # at once, before a run directory exists (the cluster is joined later)
        self.address = address
        self.max_retries = int(max_retries)
        self.imports = list(imports)
        self.actors: list[Any] = []
        self.retries = 0  # slices re-run after an actor died, over the sampler's life
        self.round_hook: Callable[[RaySampler], None] | None = (
            None  # called once a round's slices are submitted
        )
        self._started_ray = False

    def worker_args(self) -> dict[str, Any]:
        """The constructor arguments of each actor's in-process sampler (task features come from the driver)."""
        return {
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "policy": self.policy,
            "episodes_per_task": self.episodes_per_task,
            "task_features": False,
            "normalized_actions": self.normalized_actions,
        }

    def _new_actor(self) -> Any:
        ray = _ray()
        remote = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(SliceSampler)
        return remote.remote(self.worker_args(), self.imports)

    def _ensure_actors(self) -> None:
        if self.actors:
            return
        ray = _ray()
        self._started_ray = connect(self.address) or self._started_ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < self.workers:
            raise UserError(
                f"sampler.workers={self.workers} needs {self.workers} CPUs but the Ray cluster has {cpus}: lower "
                "sampler.workers or add machines (`ray start --address=HEAD:6379`)"
            )
        self.actors = [self._new_actor() for _ in range(self.workers)]

    def pids(self) -> list[int]:
        """Process ids of the actors (started if need be)."""
        self._ensure_actors()
        return _ray().get([actor.pid.remote() for actor in self.actors])

    @torch.no_grad()
    def sample(
        self,
        params: Mapping[str, torch.Tensor],
        tasks: Sequence[Task],
        seed: int,
        generator: torch.Generator,
    ) -> Episodes:
        """:meth:`BatchedSampler.sample <metarl.agents.sampler.BatchedSampler.sample>` over the actors; the same
        episodes, and ``generator`` left where the in-process sampler leaves it."""
        self.check_round_size(len(tasks))
        self._ensure_actors()
        ray = _ray()
        features = self.task_features(tasks) if self.use_task_features else None
        horizon = int(self.env.unwrapped.horizon)
        noise, states = [], []  # the in-process sampler draws step t's noise for every task, in this order
        for _ in range(horizon):
            noise.append(self.policy.action_noise((len(tasks), self.episodes_per_task), generator))
            states.append(generator.get_state())
        noise = torch.stack(noise)
        shared = ray.put({name: p.detach() for name, p in params.items()})
        slices = task_slices(len(tasks), self.workers)
        jobs = [
            {
                "rows": rows,
                "tasks": list(tasks[rows[0] : rows[1]]),
                "seed": int(seed),
                "noise": ray.put(noise[:, rows[0] : rows[1]].contiguous()),
                "features": None if features is None else features[rows[0] : rows[1]],
            }
            for rows in slices
        ]
        parts = self._run(shared, jobs, [0] * len(jobs), hook=True)
        steps = max(part.rewards.shape[2] for part in parts)
        short = [k for k, part in enumerate(parts) if part.rewards.shape[2] < steps]
        if short:  # slices that ended earlier than the round: re-run them as long, as the whole batch runs
            for k, part in zip(
                short, self._run(shared, [jobs[k] for k in short], [steps] * len(short)), strict=True
            ):
                parts[k] = part
        generator.set_state(states[steps - 1])
        return Episodes(
            observations=torch.cat([p.observations for p in parts]),
            actions=torch.cat([p.actions for p in parts]),
            rewards=torch.cat([p.rewards for p in parts]),
            mask=torch.cat([p.mask for p in parts]),
            task_feature_size=parts[0].task_feature_size,
            successes=None if parts[0].successes is None else torch.cat([p.successes for p in parts]),
        )

    def _submit(self, k: int, shared: Any, job: dict[str, Any], min_steps: int) -> Any:
        return self.actors[k].run.remote(
            shared, job["rows"], job["tasks"], job["seed"], job["noise"], job["features"], min_steps
        )

    def _run(
        self, shared: Any, jobs: list[dict[str, Any]], min_steps: list[int], hook: bool = False
    ) -> list[Episodes]:
        """Run ``jobs`` (job ``k`` on actor ``k``), replacing actors that die and re-running their slices."""
        ray = _ray()
        pending = {k: self._submit(k, shared, job, min_steps[k]) for k, job in enumerate(jobs)}
        if hook and self.round_hook is not None:
            self.round_hook(self)
        results: dict[int, Episodes] = {}
        retries = 0
        while pending:
            for k, ref in list(pending.items()):
                try:
                    results[k] = ray.get(ref)
                    del pending[k]
                except ray.exceptions.RayActorError as exc:
                    if getattr(exc, "actor_init_failed", False):  # it would fail again: say why
                        raise UserError(
                            f"a Ray sampler worker could not start ({_last_error_line(str(exc))}): every machine "
                            f"needs metarl, the env's packages and the run's imports {self.imports} importable"
                        ) from None
                    retries += 1
                    self.retries += 1
                    rows = jobs[k]["rows"]
                    if retries > self.max_retries:
                        raise WorkerLost(
                            f"Ray sampler: actors died {retries} times in one sampling round (the last had tasks "
                            f"{rows[0]}..{rows[1] - 1}: {type(exc).__name__}), more than sampler.max_retries="
                            f"{self.max_retries}; the run stops here and resumes from its last checkpoint"
                        ) from None
                    ray.kill(self.actors[k], no_restart=True)
                    self.actors[k] = self._new_actor()
                    pending[k] = self._submit(k, shared, jobs[k], min_steps[k])
        return [results[k] for k in range(len(jobs))]

    def close(self) -> None:
        """Stop the actors (and Ray, if this sampler started it), and close the in-process engine."""
        super().close()
        if self.actors:
            ray = _ray()
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
            if self._started_ray:
                ray.shutdown()
                self._started_ray = False


def make_sampler(
    config: TrainConfig,
    policy: MLPPolicy,
    episodes_per_task: int | None = None,
    task_features: bool | None = None,
) -> BatchedSampler:
    """The training sampler a run's ``sampler`` section asks for: a :class:`BatchedSampler` in this process or a
    :class:`RaySampler` over Ray actors (the same episodes either way). ``episodes_per_task`` and
    ``task_features`` (the oracle's) default to the config's."""
    args = (
        config.env,
        config.env_kwargs,
        policy,
        config.episodes_per_task if episodes_per_task is None else episodes_per_task,
        config.oracle if task_features is None else task_features,
        config.policy.normalized_actions,
    )
    if config.sampler.backend == "local":
        return BatchedSampler(*args)
    return RaySampler(
        *args,
        workers=config.sampler.workers,
        address=config.sampler.address,
        max_retries=config.sampler.max_retries,
        imports=config.imports,
    )

"""Sinusoid regression tasks (Finn et al. 2017, "Model-Agnostic Meta-Learning", section 5.1)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch


def _check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise UserError(f"{name} must be a pair (low, high) of numbers, got {value!r}") from err
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise UserError(f"{name} must be finite with low <= high, got {value!r}")
    return low, high


class SinusoidTasks:
    """The MAML sinusoid task distribution: ``y = amplitude * sin(x - phase)``.

    Each task draws amplitude ~ U[0.1, 5.0] and phase ~ U[0, pi]; its inputs are x ~ U[-5, 5] (the ranges are
    arguments). Support and query points are drawn independently from the same range. Outputs have no noise.

    Batches are :class:`EpisodeBatch` with ``ways=1``: ``support_x``/``support_y`` are ``(tasks, shots, 1)`` float32,
    ``query_x``/``query_y`` ``(tasks, queries, 1)``. All randomness comes from one ``np.random.Generator``.

    Args:
        seed: seed of the generator.
        amplitude_range: ``(low, high)`` of the uniform amplitude distribution.
        phase_range: ``(low, high)`` of the uniform phase distribution (radians).
        x_range: ``(low, high)`` of the uniform input distribution.
    """

    def __init__(
        self,
        seed: int = 0,
        amplitude_range: tuple[float, float] = (0.1, 5.0),
        phase_range: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ):
        self.amplitude_range = _check_range("amplitude_range", amplitude_range)
        self.phase_range = _check_range("phase_range", phase_range)
        self.x_range = _check_range("x_range", x_range)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def function(x: np.ndarray, amplitude: np.ndarray | float, phase: np.ndarray | float) -> np.ndarray:
        """The target ``amplitude * sin(x - phase)`` (broadcasting)."""
        return amplitude * np.sin(x - phase)

    def sample_params(self, tasks: int) -> tuple[np.ndarray, np.ndarray]:
        """``tasks`` amplitudes and phases, each ``(tasks,)`` float64."""
        amplitudes = self.rng.uniform(*self.amplitude_range, size=tasks)
        phases = self.rng.uniform(*self.phase_range, size=tasks)
        return amplitudes, phases

    def batch_for(self, amplitudes: np.ndarray, phases: np.ndarray, shots: int, queries: int) -> EpisodeBatch:
        """A batch for given task parameters, with fresh random support and query inputs."""
        amplitudes, phases = np.asarray(amplitudes, dtype=np.float64), np.asarray(phases, dtype=np.float64)
        if amplitudes.ndim != 1 or amplitudes.shape != phases.shape:
            raise UserError(
                f"amplitudes and phases must be 1-D of equal length, got {amplitudes.shape} and {phases.shape}"
            )
        tasks = len(amplitudes)
        support_x = self.rng.uniform(*self.x_range, size=(tasks, shots, 1))
        query_x = self.rng.uniform(*self.x_range, size=(tasks, queries, 1))
        amplitude, phase = amplitudes[:, None, None], phases[:, None, None]

        def as_tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array.astype(np.float32))

        return EpisodeBatch(
            as_tensor(support_x),
            as_tensor(self.function(support_x, amplitude, phase)),
            as_tensor(query_x),
            as_tensor(self.function(query_x, amplitude, phase)),
            ways=1,
            shots=shots,
            queries=queries,
        )

    def sample_with_params(
        self, tasks: int, shots: int, queries: int
    ) -> tuple[EpisodeBatch, np.ndarray, np.ndarray]:
        """A batch of ``tasks`` new tasks and their ``(amplitudes, phases)``."""
        for name, value, minimum in (("tasks", tasks, 1), ("shots", shots, 1), ("queries", queries, 0)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
                raise UserError(f"{name} must be an integer >= {minimum}, got {value!r}")
        amplitudes, phases = self.sample_params(tasks)
        return self.batch_for(amplitudes, phases, shots, queries), amplitudes, phases

    def sample(self, tasks: int, shots: int, queries: int) -> EpisodeBatch:
        """A batch of ``tasks`` new tasks with ``shots`` support and ``queries`` query points each."""
        return self.sample_with_params(tasks, shots, queries)[0]

    def state_dict(self) -> dict[str, Any]:
        """The generator state, to store in a checkpoint."""
        return {"seed": self.seed, "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`state_dict`."""
        self.rng.bit_generator.state = state["bit_generator"]

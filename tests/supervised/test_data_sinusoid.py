"""MAML sinusoid tasks: ranges, targets, shapes and seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarl.supervised.data import SinusoidTasks


def test_batch_shapes_and_targets_follow_the_task_parameters():
    tasks = SinusoidTasks(seed=0)
    batch, amplitudes, phases = tasks.sample_with_params(tasks=6, shots=10, queries=7)
    assert batch.support_x.shape == (6, 10, 1) and batch.support_y.shape == (6, 10, 1)
    assert batch.query_x.shape == (6, 7, 1) and batch.query_y.shape == (6, 7, 1)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.float32
    assert (batch.ways, batch.shots, batch.queries) == (1, 10, 7)
    for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
        expected = amplitudes[:, None, None] * np.sin(x.double().numpy() - phases[:, None, None])
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_parameters_and_inputs_cover_the_maml_ranges():
    batch, amplitudes, phases = SinusoidTasks(seed=1).sample_with_params(tasks=4000, shots=5, queries=5)
    assert 0.1 <= amplitudes.min() < 0.2 and 4.9 < amplitudes.max() <= 5.0
    assert 0.0 <= phases.min() < 0.01 and math.pi - 0.01 < phases.max() <= math.pi
    assert abs(amplitudes.mean() - 2.55) < 0.1 and abs(phases.mean() - math.pi / 2) < 0.06
    x = torch.cat([batch.support_x, batch.query_x], 1)
    assert -5.0 <= float(x.min()) < -4.99 and 4.99 < float(x.max()) <= 5.0
    assert abs(float(x.mean())) < 0.05
    assert float(batch.query_y.abs().max()) <= 5.0 + 1e-5


def test_custom_ranges_are_respected():
    batch, amplitudes, phases = SinusoidTasks(
        seed=2, amplitude_range=(1.0, 1.0), phase_range=(0, 0), x_range=(0, 1)
    ).sample_with_params(50, 4, 4)
    assert np.all(amplitudes == 1.0) and np.all(phases == 0.0)
    assert float(batch.support_x.min()) >= 0 and float(batch.support_x.max()) <= 1
    torch.testing.assert_close(batch.support_y, torch.sin(batch.support_x))


def test_seeding_reproduces_and_distinguishes():
    a, b, c = (
        SinusoidTasks(seed=5).sample(3, 5, 5),
        SinusoidTasks(seed=5).sample(3, 5, 5),
        SinusoidTasks(seed=6).sample(3, 5, 5),
    )
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    assert not torch.equal(a.support_x, c.support_x)
    tasks = SinusoidTasks(seed=5)
    state = tasks.state_dict()
    first = tasks.sample(2, 3, 3)
    tasks.load_state_dict(state)
    assert torch.equal(tasks.sample(2, 3, 3).query_x, first.query_x)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="amplitude_range"):
        SinusoidTasks(amplitude_range=(5.0, 0.1))
    with pytest.raises(ValueError, match="x_range"):
        SinusoidTasks(x_range=(float("nan"), 1.0))
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        SinusoidTasks().sample(2, 0, 5)


def test_batch_for_given_parameters():
    tasks = SinusoidTasks(seed=3)
    batch = tasks.batch_for(np.array([2.0, 0.5]), np.array([0.0, 1.0]), shots=5, queries=3)
    torch.testing.assert_close(batch.query_y[0], 2.0 * torch.sin(batch.query_x[0]))
    torch.testing.assert_close(batch.support_y[1], 0.5 * torch.sin(batch.support_x[1] - 1.0))
    with pytest.raises(ValueError, match="equal length"):
        tasks.batch_for(np.array([1.0, 2.0]), np.array([0.0]), shots=5, queries=3)

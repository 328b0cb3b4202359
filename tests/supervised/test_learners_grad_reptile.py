"""Reptile: the outer update equals the interpolation toward Adam-adapted copies, annealing, and learning."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import random_image_batch

from metarl.core import named_params
from metarl.supervised.data import SinusoidTasks
from metarl.supervised.learners.reptile import Reptile
from metarl.supervised.models import MLP, Conv4


def test_outer_update_interpolates_toward_adam_adapted_copies():
    # An MLP: with batch norm the conv biases get gradients of pure rounding noise, which Adam amplifies.
    torch.manual_seed(0)
    model = MLP(hidden=(8, 8))
    batch = SinusoidTasks(0).sample(3, 6, 0)
    # inner_batch = the whole support set: every mini-batch is the full set (order does not change the loss).
    reptile = Reptile(
        model,
        loss="mse",
        inner_lr=0.01,
        inner_steps=3,
        inner_batch=6,
        outer_step_size=0.5,
        final_outer_step_size=0.5,
    )
    theta = {n: p.detach().clone() for n, p in named_params(model).items()}
    adapted = []
    for t in range(batch.num_tasks):
        clone = copy.deepcopy(model)
        optimizer = torch.optim.Adam(clone.parameters(), lr=0.01, betas=(0.0, 0.999))
        for _ in range(3):
            optimizer.zero_grad()
            F.mse_loss(clone(batch.support_x[t]), batch.support_y[t]).backward()
            optimizer.step()
        adapted.append(dict(clone.named_parameters()))
    stats = reptile.train_step(batch)
    assert stats["outer_step_size"] == 0.5
    for name, value in named_params(model).items():
        mean_phi = torch.stack([phi[name].detach() for phi in adapted]).mean(0)
        expected = theta[name] + 0.5 * (mean_phi - theta[name])
        torch.testing.assert_close(value.detach(), expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(value.detach(), theta[name])


def test_outer_step_size_anneals_linearly_and_is_checkpointed():
    reptile = Reptile(MLP(), loss="mse", inner_steps=1, outer_step_size=1.0, final_outer_step_size=0.0)
    reptile.set_total_iterations(4)
    tasks = SinusoidTasks(0)
    steps = [reptile.train_step(tasks.sample(2, 5, 0))["outer_step_size"] for _ in range(4)]
    assert steps == pytest.approx([1.0, 0.75, 0.5, 0.25])
    restored = Reptile(MLP(), loss="mse")
    restored.set_total_iterations(4)
    restored.load_state_dict(reptile.state_dict())
    assert restored.outer_step() == pytest.approx(0.0)


def test_predict_is_deterministic_and_leaves_the_training_stream_alone():
    torch.manual_seed(0)
    reptile = Reptile(
        Conv4(1, 8, ways=2, hidden=3, blocks=2), inner_steps=2, inner_batch=2, eval_inner_steps=4
    )
    batch = random_image_batch(1, dtype=torch.float32)
    state = reptile.generator.get_state()
    first, second = reptile.predict(batch), reptile.predict(batch)
    torch.testing.assert_close(first, second)
    assert torch.equal(reptile.generator.get_state(), state)
    assert first.shape == (2, 4, 2)


def test_reptile_learns_the_sinusoid():
    torch.manual_seed(0)
    tasks, test = SinusoidTasks(0), SinusoidTasks(99).sample(100, 10, 50)
    reptile = Reptile(MLP(), loss="mse", inner_lr=0.01, inner_steps=5, inner_batch=10, eval_inner_steps=5)
    reptile.set_total_iterations(100)

    def query_mse() -> float:
        return float((reptile.predict(test) - test.query_y).pow(2).mean())

    before = query_mse()
    for _ in range(100):
        reptile.train_step(tasks.sample(5, 10, 0))
    after = query_mse()
    assert after < 0.5 * before, (before, after)


def test_bad_arguments():
    with pytest.raises(ValueError, match="outer_step_size"):
        Reptile(MLP(), outer_step_size=0)
    with pytest.raises(ValueError, match="inner_batch"):
        Reptile(MLP(), inner_batch=0)

"""The ES machinery of metarl.core on a supervised problem: ES on the MAML objective of a sinusoid regressor (the
query loss after one gradient step on the support set) lowers that loss, with no meta-gradient at all."""

from __future__ import annotations

import torch

from metarl.core import adapt, es_gradient, flatten, functional_forward, named_params, unflatten_like
from metarl.supervised.data.sinusoid import SinusoidTasks
from metarl.supervised.models import MLP


def test_es_on_the_maml_loss_of_a_sinusoid_regressor_lowers_it():
    torch.manual_seed(0)
    model = MLP(hidden=(16, 16))
    layout = {n: p.detach() for n, p in named_params(model).items()}
    tasks = SinusoidTasks(seed=0)

    def maml_loss(vector: torch.Tensor, batch) -> torch.Tensor:
        params = {n: p.requires_grad_(True) for n, p in unflatten_like(vector.clone(), layout).items()}
        losses = []
        for t in range(batch.support_x.shape[0]):

            def support_loss(values, t=t):
                return (
                    (functional_forward(model, values, batch.support_x[t]) - batch.support_y[t]) ** 2
                ).mean()

            phi = adapt(params, support_loss, steps=1, lr=0.01, first_order=True)
            losses.append(((functional_forward(model, phi, batch.query_x[t]) - batch.query_y[t]) ** 2).mean())
        return torch.stack(losses).mean().detach()

    held_out = tasks.sample(tasks=8, shots=10, queries=10)
    theta = flatten(layout.values()).clone()
    before = maml_loss(theta, held_out)
    optimizer = torch.optim.Adam([theta.requires_grad_(True)], lr=0.02)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        batch = tasks.sample(tasks=4, shots=10, queries=10)
        gradient, _ = es_gradient(
            theta.detach(),
            lambda vectors, batch=batch: -torch.stack([maml_loss(v, batch) for v in vectors]),
            8,
            0.05,
            generator,
        )
        theta.grad = -gradient
        optimizer.step()
    after = maml_loss(theta.detach(), held_out)
    assert after < 0.9 * before, (float(before), float(after))

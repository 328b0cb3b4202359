"""MAML / FOMAML / Meta-SGD / ANIL through metarl.core: exact meta-gradients, batching, and learning."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_image_batch as image_batch

from metarl.core import adapt, functional_forward, load_params_, named_params
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners import build_learner
from metarl.supervised.learners.maml import ANIL, MAML, MetaSGD
from metarl.supervised.models import MLP, Conv4


def tiny_conv(ways: int = 2) -> Conv4:
    torch.manual_seed(0)
    return Conv4(1, 8, ways=ways, hidden=3, blocks=2).double()


def meta_grad(learner: MAML, batch: EpisodeBatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    loss, _ = learner.meta_loss(batch)
    params = [p for p in learner.parameters() if p.requires_grad]
    return loss, list(torch.autograd.grad(loss, params))


def directional_fd(
    learner: MAML, batch: EpisodeBatch, direction: list[torch.Tensor], eps: float = 1e-6
) -> float:
    """Central finite difference of the meta-loss along ``direction`` over all meta-parameters."""
    params = [p for p in learner.parameters() if p.requires_grad]
    base = [p.detach().clone() for p in params]
    values = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for p, b, d in zip(params, base, direction, strict=True):
                p.copy_(b + sign * eps * d)
        values.append(float(learner.meta_loss(batch)[0].detach()))
    with torch.no_grad():
        for p, b in zip(params, base, strict=True):
            p.copy_(b)
    return (values[0] - values[1]) / (2 * eps)


@pytest.mark.parametrize("steps", [1, 2])
def test_maml_meta_gradient_through_conv4_is_second_order(steps):
    batch = image_batch(0)
    maml = MAML(tiny_conv(), inner_lr=0.5, inner_steps=steps)
    fomaml = MAML(tiny_conv(), inner_lr=0.5, inner_steps=steps, first_order=True)
    _, grads = meta_grad(maml, batch)
    _, first = meta_grad(fomaml, batch)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = [torch.randn(g.shape, generator=gen, dtype=g.dtype) for g in grads]
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
        numeric = directional_fd(maml, batch, direction)
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-8)
        first_order = sum(float((g * d).sum()) for g, d in zip(first, direction, strict=True))
        assert abs(first_order - numeric) > 1e-3 * max(abs(numeric), 1e-3)  # FOMAML misses the curvature
    flat = torch.cat([g.flatten() for g in grads])
    flat_first = torch.cat([g.flatten() for g in first])
    assert (flat - flat_first).norm() > 1e-2 * flat.norm()


def test_batched_adaptation_equals_per_task_core_adapt():
    """The expanded-parameter trick gives each task exactly its own inner gradient."""
    batch = image_batch(3, tasks=3)
    model = tiny_conv()
    learner = MAML(model, inner_lr=0.3, inner_steps=2)
    loss, grads = meta_grad(learner, batch)
    meta = named_params(model)
    losses = []
    for t in range(batch.num_tasks):
        phi = adapt(
            meta,
            lambda p, t=t: F.cross_entropy(
                functional_forward(model, p, batch.support_x[t]), batch.support_y[t]
            ),
            steps=2,
            lr=0.3,
        )
        losses.append(F.cross_entropy(functional_forward(model, phi, batch.query_x[t]), batch.query_y[t]))
    reference = torch.stack(losses).mean()
    ref_grads = torch.autograd.grad(reference, list(meta.values()))
    torch.testing.assert_close(loss, reference)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("cls", [MAML, ANIL, MetaSGD])
def test_vmap_and_loop_give_the_same_numbers(cls):
    batch = image_batch(4, tasks=3)
    fast = cls(tiny_conv(), inner_steps=2, vectorize=True)
    slow = cls(tiny_conv(), inner_steps=2, vectorize=False)
    slow.load_state_dict(fast.state_dict())
    loss_fast, grads_fast = meta_grad(fast, batch)
    loss_slow, grads_slow = meta_grad(slow, batch)
    torch.testing.assert_close(loss_fast, loss_slow)
    for a, b in zip(grads_fast, grads_slow, strict=True):
        torch.testing.assert_close(a, b)


def test_predict_without_grad_matches_differentiable_predict():
    batch = image_batch(5)
    learner = MAML(tiny_conv(), inner_lr=0.4, eval_inner_steps=3)
    with torch.no_grad():
        detached = learner.predict(batch)
    attached = learner.predict(batch)
    assert not detached.requires_grad and attached.requires_grad
    torch.testing.assert_close(detached, attached.detach())
    assert detached.shape == (2, 4, 2)
    # Adaptation changes the predictions, and the module itself is never modified.
    before = {n: p.clone() for n, p in learner.state_dict().items()}
    with torch.no_grad():
        unadapted = learner.predict(batch, steps=0)
    assert not torch.allclose(unadapted, detached)
    assert all(torch.equal(before[n], p) for n, p in learner.state_dict().items())


def test_anil_adapts_only_the_head():
    batch = image_batch(6)
    model = tiny_conv()
    anil = ANIL(model, inner_lr=0.5, inner_steps=1)
    assert anil.adapted_names() == ["head.weight", "head.bias"]
    phi, forward, prepare = anil.adapt_tasks(batch, 1)
    assert set(phi) == {"weight", "bias"} and phi["weight"].shape == (2, *model.head.weight.shape)
    # Reference: features from the meta-parameters' body, one SGD step on the head only, per task.
    expected = []
    for t in range(batch.num_tasks):
        feats_s, feats_q = model.embed(batch.support_x[t]), model.embed(batch.query_x[t])
        w, b = model.head.weight, model.head.bias
        gw, gb = torch.autograd.grad(F.cross_entropy(F.linear(feats_s, w, b), batch.support_y[t]), (w, b))
        expected.append(F.linear(feats_q, w - 0.5 * gw, b - 0.5 * gb))
    torch.testing.assert_close(forward(phi, prepare(batch.query_x)), torch.stack(expected))
    # The body is meta-trained through the outer loss.
    loss, _ = anil.meta_loss(batch)
    body_grad = torch.autograd.grad(loss, model.features[0][0].weight)[0]
    assert body_grad.abs().sum() > 0
    with pytest.raises(ValueError, match="head"):
        ANIL(Conv4(1, 8, ways=None, hidden=3, blocks=2))


def test_meta_sgd_learns_per_parameter_rates():
    batch = image_batch(7)
    model = tiny_conv()
    meta_sgd = MetaSGD(model, lr_init=0.3, inner_steps=1)
    rates = meta_sgd.learned_lrs.as_dict()
    assert {n: r.shape for n, r in rates.items()} == {n: p.shape for n, p in named_params(model).items()}
    maml = MAML(tiny_conv(), inner_lr=0.3, inner_steps=1)
    loss, _ = meta_sgd.meta_loss(batch)
    torch.testing.assert_close(loss, maml.meta_loss(batch)[0])  # constant rates = MAML with that rate
    rate_grads = torch.autograd.grad(loss, list(rates.values()))
    assert all(g.shape == r.shape for g, r in zip(rate_grads, rates.values(), strict=True))
    assert sum(float(g.abs().sum()) for g in rate_grads) > 0
    torch.manual_seed(0)
    drawn = MetaSGD(MLP(), lr_init=(0.005, 0.1)).learned_lrs.as_dict()
    values = torch.cat([r.detach().flatten() for r in drawn.values()])
    assert float(values.min()) >= 0.005 and float(values.max()) <= 0.1 and float(values.std()) > 0.01


def sinusoid_after_one_step(learner, seed: int = 99) -> float:
    from metarl.supervised.data import SinusoidTasks

    batch = SinusoidTasks(seed).sample(200, 10, 50)
    with torch.no_grad():
        return float((learner.predict(batch) - batch.query_y).pow(2).mean())


@pytest.mark.parametrize(
    ("name", "options", "threshold"), [("maml", {"inner_lr": 0.01}, 0.6), ("meta-sgd", {}, 0.35)]
)
def test_maml_and_meta_sgd_learn_the_sinusoid(name, options, threshold):
    from metarl.supervised.data import SinusoidTasks

    torch.manual_seed(0)
    learner = build_learner(name, MLP(), {"loss": "mse", **options})
    optimizer = torch.optim.Adam(learner.parameters(), 3e-3)
    before = sinusoid_after_one_step(learner)
    tasks = SinusoidTasks(0)
    for _ in range(300):
        learner.train_step(tasks.sample(10, 10, 10), optimizer)
    after = sinusoid_after_one_step(learner)
    assert after < threshold * before, (before, after)


def test_maml_learns_few_shot_classification():
    from metarl.supervised.config import synthetic_dataset
    from metarl.supervised.data import EpisodeSampler

    torch.manual_seed(0)
    train = EpisodeSampler(synthetic_dataset(20, 20, 16, seed=0), 5, 1, 2, tasks_per_batch=4, seed=0)
    test = EpisodeSampler(synthetic_dataset(20, 20, 16, seed=2), 5, 1, 5, tasks_per_batch=40, seed=5).sample()
    learner = MAML(Conv4(1, 16, ways=5, hidden=16), inner_lr=0.4, inner_steps=1, eval_inner_steps=1)
    optimizer = torch.optim.Adam(learner.parameters(), 3e-3)
    with torch.no_grad():
        before = float(learner.accuracy(test).mean())
    for _ in range(30):
        learner.train_step(train.sample(), optimizer)
    with torch.no_grad():
        after = float(learner.accuracy(test).mean())
    assert before < 0.4 and after > 0.8, (before, after)


def test_learner_registry_and_bad_options():
    learner = build_learner("fomaml", tiny_conv(), {"inner_lr": 0.2})
    assert isinstance(learner, MAML) and learner.first_order and learner.inner_lr == 0.2
    with pytest.raises(ValueError, match="unknown learner 'mamal'"):
        build_learner("mamal", tiny_conv())
    with pytest.raises(ValueError, match="does not take option.*inner_rate.*valid learner_options.*inner_lr"):
        build_learner("maml", tiny_conv(), {"inner_rate": 0.1})
    with pytest.raises(ValueError, match="lr_init"):
        build_learner("meta-sgd", tiny_conv(), {"inner_rate": 0.1})
    with pytest.raises(ValueError, match="inner_lr must be > 0"):
        MAML(tiny_conv(), inner_lr=0)
    model = tiny_conv()
    before = {n: p.clone() for n, p in model.named_parameters()}
    load_params_(model, before)


def test_maml_backward_in_task_chunks_gives_the_same_update():
    """MAML on Conv4 accumulates gradients over chunks of tasks: the same update as one backward pass."""
    batch = image_batch(8, tasks=5)
    updates = []
    for chunk in (None, 2):
        learner = MAML(tiny_conv(), inner_lr=0.4)
        assert learner.backward_chunk == 8  # Conv4 has forward_tasks
        learner.backward_chunk = chunk
        metrics = learner.train_step(batch, torch.optim.SGD(learner.parameters(), lr=0.1))
        updates.append((metrics, [p.detach().clone() for p in learner.parameters()]))
    (whole, whole_params), (chunked, chunked_params) = updates
    assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-10)
    for a, b in zip(whole_params, chunked_params, strict=True):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(whole_params, tiny_conv().parameters(), strict=True))

"""Meta-LSTM (Ravi & Larochelle 2017): the unrolled inner loop against a textbook per-coordinate loop, the
meta-gradient against finite differences, the first-order approximation and the preprocessing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_image_batch as image_batch

from metarl.errors import UserError
from metarl.supervised import runner
from metarl.supervised.config import FewShotConfig
from metarl.supervised.learners import coordinate_lstm
from metarl.supervised.learners.meta_lstm import MetaLSTM, preprocess
from metarl.supervised.models import Conv4
from metarl.training import config_file, load_config


def tiny_learner(**options) -> MetaLSTM:
    torch.manual_seed(0)
    learner = MetaLSTM(Conv4(1, 8, ways=2, hidden=3, blocks=2), hidden=4, **options).double()
    with torch.no_grad():  # gates far from saturation, so every term of the gradient matters
        learner.gates.input_gate.bias.fill_(-1.0)
        learner.gates.forget_gate.bias.fill_(1.0)
    return learner


def test_preprocessing_matches_the_formula():
    x = torch.tensor([1.0, -0.5, 1e-6, -1e-7, 0.0], dtype=torch.float64)
    # |x| >= e^-10 (about 4.5e-5): (log|x| / 10, sign x); below: (-1, e^10 x).
    expected = [
        (0.0, 1.0),
        (math.log(0.5) / 10, -1.0),
        (-1.0, 1e-6 * math.exp(10)),
        (-1.0, -1e-7 * math.exp(10)),
        (-1.0, 0.0),
    ]
    torch.testing.assert_close(preprocess(x), torch.tensor(expected, dtype=torch.float64))


def textbook_adapt(learner: MetaLSTM, support_x, support_y, steps: int) -> dict[str, torch.Tensor]:
    """One task: the paper's update written per parameter tensor, with the gate weights split by hand."""
    params = {n: p for n, p in learner.model.named_parameters()}
    hidden = learner.input_lstm.hidden_size
    W_i, b_i = learner.gates.input_gate.weight[0], learner.gates.input_gate.bias[0]
    W_f, b_f = learner.gates.forget_gate.weight[0], learner.gates.forget_gate.bias[0]
    states = {n: None for n in params}
    i_prev = {n: torch.zeros(p.numel(), dtype=p.dtype) for n, p in params.items()}
    f_prev = {n: torch.zeros(p.numel(), dtype=p.dtype) for n, p in params.items()}
    for _ in range(steps):
        logits = torch.func.functional_call(learner.model, params, (support_x,))
        loss = F.cross_entropy(logits, support_y)
        grads = dict(
            zip(params, torch.autograd.grad(loss, list(params.values()), create_graph=True), strict=True)
        )
        new = {}
        for n, p in params.items():
            g, c = grads[n].reshape(-1), p.reshape(-1)
            x = torch.cat([preprocess(g), preprocess(loss).expand(len(g), 2)], 1)
            states[n] = learner.input_lstm(x, states[n])
            h = states[n][0]
            i = torch.sigmoid(h @ W_i[:hidden] + c * W_i[hidden] + i_prev[n] * W_i[hidden + 1] + b_i)
            f = torch.sigmoid(h @ W_f[:hidden] + c * W_f[hidden] + f_prev[n] * W_f[hidden + 1] + b_f)
            i_prev[n], f_prev[n] = i, f
            new[n] = (f * c - i * g).reshape(p.shape)
        params = new
    return params


@pytest.mark.parametrize(("vectorize", "chunk_coordinates"), [(True, 0), (False, 0), (True, 7)])
def test_inner_loop_equals_the_textbook_loop(vectorize, chunk_coordinates):
    # chunk_coordinates=7: the coordinate-wise layers in uneven chunks, recomputed in the backward pass
    learner = tiny_learner(vectorize=vectorize, chunk_coordinates=chunk_coordinates)
    batch = image_batch()
    adapted = learner.adapt_tasks(batch, steps=2)
    for t in range(batch.num_tasks):
        expected = textbook_adapt(learner, batch.support_x[t], batch.support_y[t], steps=2)
        for name, value in expected.items():
            torch.testing.assert_close(adapted[name][t], value)


def meta_loss_fd(learner, batch, direction, eps=1e-6) -> float:
    params = list(learner.parameters())
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * eps * d)
        values.append(float(learner.meta_loss(batch)[0].detach()))
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * eps * d)
    return (values[0] - values[1]) / (2 * eps)


@pytest.mark.parametrize("chunk_coordinates", [0, 7])
def test_meta_gradient_matches_finite_differences(chunk_coordinates):
    learner, batch = tiny_learner(inner_steps=2, chunk_coordinates=chunk_coordinates), image_batch()
    params = list(learner.parameters())
    grads = torch.autograd.grad(learner.meta_loss(batch)[0], params)
    torch.manual_seed(1)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    assert analytic == pytest.approx(meta_loss_fd(learner, batch, direction), rel=1e-5)


def test_chunks_give_the_whole_computation_s_meta_gradient():
    batch = image_batch()
    whole, chunked = tiny_learner(inner_steps=3), tiny_learner(inner_steps=3, chunk_coordinates=5)
    loss_whole, loss_chunked = whole.meta_loss(batch)[0], chunked.meta_loss(batch)[0]
    torch.testing.assert_close(loss_chunked, loss_whole)
    for a, b in zip(
        torch.autograd.grad(loss_chunked, list(chunked.parameters())),
        torch.autograd.grad(loss_whole, list(whole.parameters())),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    with pytest.raises(UserError, match="chunk_coordinates must be >= 0"):
        tiny_learner(chunk_coordinates=-1)


def test_first_order_drops_only_the_gradient_path():
    batch = image_batch()
    full, first = tiny_learner(inner_steps=2), tiny_learner(inner_steps=2, first_order=True)
    loss_full, _ = full.meta_loss(batch)
    loss_first, _ = first.meta_loss(batch)
    assert float(loss_full.detach()) == pytest.approx(
        float(loss_first.detach())
    )  # the same forward computation
    grads_full = torch.autograd.grad(loss_full, list(full.parameters()))
    grads_first = torch.autograd.grad(loss_first, list(first.parameters()))
    assert all(torch.isfinite(g).all() for g in grads_first)
    assert any(not torch.allclose(a, b) for a, b in zip(grads_full, grads_first, strict=True))
    assert float(grads_first[-1].abs().sum()) > 0  # the gates still learn


def test_shipped_configs_run_on_synthetic_data(tmp_path):
    for name in ("meta-lstm-omniglot-5w1s", "meta-lstm-miniimagenet-5w1s"):
        overrides = [
            "data.dataset=synthetic",
            "data.image_size=16",
            "data.val_split=null",
            "data.eval_queries=2",
            "data.queries=2",
            "model.hidden=4",
            "iterations=2",
            "meta_batch_size=2",
            "eval_episodes=4",
            "eval_batch=2",
            "checkpoint_every=2",
            "learner_options.inner_steps=2",
            f"run_root={tmp_path}",
            f"run_name={name}",
        ]
        config = load_config(FewShotConfig, config_file(f"fewshot/{name}"), overrides)
        result = runner.train(config, progress=False, echo=lambda _: None)
        assert 0.0 <= result["mean"] <= 1.0 and result["iterations"] == 2


@pytest.mark.parametrize("input_grad", [False, True])
def test_compiled_coordinate_step_equals_the_torch_modules(monkeypatch, input_grad):
    """The compiled step (float32, in chunks: 5 here) against nn.LSTMCell and MetaLSTMCell: outputs, and the
    gradients of every input and weight, within float32 and the rational tanh's few ulps."""
    monkeypatch.setattr(coordinate_lstm, "CHUNK", 5)
    torch.manual_seed(0)
    hidden, rows = 6, 13
    learner = MetaLSTM(Conv4(1, 8, ways=2, hidden=3, blocks=2), hidden=hidden)
    with torch.no_grad():
        learner.gates.input_gate.bias.fill_(-1.0)
        learner.gates.forget_gate.bias.fill_(1.0)
    inputs = [
        torch.randn(rows, 4),
        0.5 * torch.randn(rows, hidden),
        torch.randn(rows, hidden),
        torch.randn(rows),
        torch.rand(rows),
        torch.rand(rows),
    ]
    inputs = [x.requires_grad_(i > 0 or input_grad) for i, x in enumerate(inputs)]
    weights = [torch.randn(rows, hidden), torch.randn(rows, hidden), torch.randn(rows), torch.randn(rows)]
    params = list(learner.input_lstm.parameters()) + list(learner.gates.parameters())
    results = []
    for fused in (True, False):
        step = (
            learner._coordinate_step
            if not fused
            else lambda *x: coordinate_lstm.coordinate_step(
                learner.input_lstm, learner.gates.input_gate, learner.gates.forget_gate, *x
            )
        )
        outputs = step(*inputs)
        loss = sum((w * o).sum() for w, o in zip(weights, outputs, strict=True))
        wrt = [x for x in inputs if x.requires_grad] + params
        results.append((outputs, torch.autograd.grad(loss, wrt)))
    (fused_out, fused_grads), (torch_out, torch_grads) = results
    for mine, reference in zip(fused_out + fused_grads, torch_out + torch_grads, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=2e-5)
    assert fused_grads[0].abs().sum() > 0


def test_learner_takes_the_compiled_step_in_float32_and_gives_the_torch_numbers():
    batch = image_batch(dtype=torch.float32)
    losses, grads = [], []
    for fused in (True, False):
        torch.manual_seed(0)
        learner = MetaLSTM(Conv4(1, 8, ways=2, hidden=3, blocks=2), hidden=4, inner_steps=2, fused=fused)
        loss, _ = learner.meta_loss(batch)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, list(learner.parameters())))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for mine, reference in zip(*grads, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)
    assert coordinate_lstm.fused_available(torch.zeros(1)) and not coordinate_lstm.fused_available(
        torch.zeros(1, dtype=torch.float64)
    )

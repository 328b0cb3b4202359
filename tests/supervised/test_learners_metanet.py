"""MetaNet (Munkhdalai & Yu 2017): batched fast weights, memory and attention against a per-task, per-example
textbook loop; the meta-gradient against finite differences; the shipped configs on synthetic data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import random_image_batch, synthetic_run_overrides

from metarl.supervised import runner
from metarl.supervised.config import FewShotConfig
from metarl.supervised.learners.metanet import MetaNetwork
from metarl.supervised.models import Conv4
from metarl.training import config_file, load_config


def tiny(first_order=True) -> MetaNetwork:
    torch.manual_seed(0)
    encoder = Conv4(1, 8, ways=None, hidden=3, blocks=2)
    return MetaNetwork(
        encoder, ways=3, representation_dim=4, generator_hidden=8, first_order=first_order
    ).double()


def textbook_logits(net: MetaNetwork, support_x, support_y, query_x) -> torch.Tensor:
    """One task, written out: pair loop for the embedding loss, one autograd call per support example."""
    both = net.encoder.embed(torch.cat([support_x, query_x]))
    support, query = both[: len(support_x)], both[len(support_x) :]
    Q = net.representation.detach().clone().requires_grad_(True)
    keys = F.relu(support @ Q)
    pair_losses = []
    for i in range(len(support)):
        for j in range(i + 1, len(support)):
            cos = F.cosine_similarity(keys[i], keys[j], dim=0)
            same = float(support_y[i] == support_y[j])
            pair_losses.append(
                F.binary_cross_entropy_with_logits(net.contrastive_scale * cos, torch.tensor(same).double())
            )
    (q_grad,) = torch.autograd.grad(torch.stack(pair_losses).mean(), Q)
    fast_q = net.task_generator(q_grad)
    memory = []
    for i in range(len(support)):
        W = net.output_weight.detach().clone().requires_grad_(True)
        loss = F.cross_entropy((support[i] @ W + net.output_bias).unsqueeze(0), support_y[i : i + 1])
        (w_grad,) = torch.autograd.grad(loss, W)
        memory.append(net.example_generator(w_grad))
    key = lambda z: F.relu(z @ net.representation) + F.relu(z @ fast_q)  # noqa: E731
    logits = []
    for q in query:
        attention = torch.stack([F.cosine_similarity(key(q), key(s), dim=0) for s in support]).softmax(0)
        fast_w = sum(a * m for a, m in zip(attention, memory, strict=True))
        logits.append(q @ net.output_weight + net.output_bias + q @ fast_w)
    return torch.stack(logits)


def test_fast_weights_memory_and_attention_equal_the_textbook_loop():
    net, batch = tiny(), random_image_batch(ways=3)
    logits = net.predict(batch)
    for t in range(batch.num_tasks):
        expected = textbook_logits(net, batch.support_x[t], batch.support_y[t], batch.query_x[t])
        torch.testing.assert_close(logits[t], expected)


@pytest.mark.parametrize("first_order", [True, False])
def test_meta_gradient_matches_finite_differences(first_order):
    net, batch = tiny(first_order), random_image_batch(ways=3)
    names, params = zip(*net.named_parameters(), strict=True)
    grads = torch.autograd.grad(net.meta_loss(batch)[0], params, allow_unused=True)
    # Every slow weight learns, but a convolution's bias, which the batch norm after it cancels.
    learning = {n for n, g in zip(names, grads, strict=True) if g is not None and float(g.abs().sum()) > 0}
    assert learning >= {n for n in names if not (n.startswith("encoder.") and n.endswith(".0.bias"))}
    torch.manual_seed(1)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * 1e-6 * d)
        values.append(float(net.meta_loss(batch)[0].detach()))
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * 1e-6 * d)
    numeric = (values[0] - values[1]) / 2e-6
    if first_order:
        # The meta-information is a constant: the finite difference also moves it, so only closeness is expected.
        assert analytic == pytest.approx(numeric, rel=0.5)
    else:
        assert analytic == pytest.approx(numeric, rel=1e-5)


@pytest.mark.parametrize(
    "name", ["metanet-omniglot-5w1s", "metanet-omniglot-20w1s", "metanet-miniimagenet-5w1s"]
)
def test_shipped_configs_run_on_synthetic_data(tmp_path, name):
    ways = 5 if "5w" in name else 20
    overrides = synthetic_run_overrides(tmp_path, "model.hidden=4", "iterations=2", "meta_batch_size=2")
    config = load_config(FewShotConfig, config_file(f"fewshot/{name}"), overrides)
    assert config.learner_options["ways"] == config.data.ways == ways
    result = runner.train(config, progress=False, echo=lambda _: None)
    assert 0.0 <= result["mean"] <= 1.0

"""MANN (Santoro et al. 2016): LRUA memory against a slot-by-slot textbook loop, the gradient against finite
differences, the sequence task (labels one step late, instance counts, query logits) and a shipped-config run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import random_image_batch

from metarl.supervised import runner
from metarl.supervised.config import FewShotConfig
from metarl.supervised.learners.mann import LRUAMemory, MemoryAugmentedNetwork
from metarl.training import config_file, load_config


def textbook_mann(net: LRUAMemory, inputs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """One sequence, the module docstring's equations written slot by slot with Python lists (no batching)."""
    slots, width, heads = net.slots, net.width, net.heads
    h = torch.zeros(1, net.controller.hidden_size, dtype=inputs.dtype)
    c = torch.zeros_like(h)
    memory = [torch.full((width,), 1e-6, dtype=inputs.dtype) for _ in range(slots)]
    w_read = [[1.0 if i == 0 else 0.0 for i in range(slots)] for _ in range(heads)]
    usage = [float(heads) if i == 0 else 0.0 for i in range(slots)]
    reads = torch.zeros(heads * width, dtype=inputs.dtype)
    outputs = []
    for t in range(inputs.shape[0]):
        x = torch.cat([inputs[t], previous[t], reads]).unsqueeze(0)
        h, c = net.controller(x, (h, c))
        keys = torch.tanh(net.keys(h)[0]).view(heads, width)
        adds = torch.tanh(net.adds(h)[0]).view(heads, width)
        gates = torch.sigmoid(net.write_gates(h)[0])
        smallest = sorted(range(slots), key=lambda i: (usage[i], i))[:heads]
        least_used = [1.0 if i in smallest else 0.0 for i in range(slots)]
        oldest = min(range(slots), key=lambda i: (usage[i], i))
        memory[oldest] = torch.zeros(width, dtype=inputs.dtype)
        w_write = [
            [gates[r] * w_read[r][i] + (1 - gates[r]) * least_used[i] for i in range(slots)]
            for r in range(heads)
        ]
        memory = [memory[i] + sum(w_write[r][i] * adds[r] for r in range(heads)) for i in range(slots)]
        new_reads = []
        for r in range(heads):
            sims = torch.stack(
                [torch.dot(keys[r], m) / (keys[r].norm() * m.norm()).clamp_min(1e-8) for m in memory]
            )
            w_read[r] = list(sims.softmax(0))
            new_reads.append(sum(w_read[r][i] * memory[i] for i in range(slots)))
        reads = torch.cat(new_reads)
        usage = [
            net.usage_decay * usage[i]
            + sum(float(w_read[r][i].detach()) + float(w_write[r][i].detach()) for r in range(heads))
            for i in range(slots)
        ]
        outputs.append(net.output(torch.cat([h[0], reads])))
    return torch.stack(outputs)


def tiny_network(seed: int = 0) -> LRUAMemory:
    torch.manual_seed(seed)
    return LRUAMemory(
        input_size=6, ways=3, controller_size=5, memory_slots=5, memory_width=4, read_heads=2
    ).double()


def test_lrua_memory_equals_the_textbook_loop():
    net = tiny_network()
    gen = torch.Generator().manual_seed(1)
    inputs = torch.rand(3, 7, 6, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (3, 7), generator=gen)
    one_hot = F.one_hot(labels, 3).double()
    previous = torch.cat([torch.zeros_like(one_hot[:, :1]), one_hot[:, :-1]], 1)
    batched = net(inputs, previous)
    for b in range(3):
        torch.testing.assert_close(batched[b], textbook_mann(net, inputs[b], previous[b]))


def test_least_used_marks_exactly_one_slot_per_head_even_when_usages_tie():
    """A fresh memory has every unused slot at usage 0: the paper's "at most the n-th smallest" would mark all
    of them, and every write would then go to every slot."""
    net = LRUAMemory(input_size=2, ways=2, controller_size=3, memory_slots=6, memory_width=2, read_heads=2)
    usage = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.9, 0.1, 0.3, 0.2]])
    expected = torch.tensor([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(net.least_used(usage), expected)


class Backbone:
    in_channels, image_size = 1, 4


def tiny_mann() -> MemoryAugmentedNetwork:
    torch.manual_seed(0)
    options = dict(ways=3, controller_size=6, memory_slots=5, memory_width=4, read_heads=2)
    return MemoryAugmentedNetwork(Backbone(), **options).double()


def test_meta_gradient_matches_finite_differences():
    learner, batch = tiny_mann(), random_image_batch(ways=3, shots=1, size=4)
    params = list(learner.parameters())
    state = learner.order_generator.get_state()
    loss, _ = learner.meta_loss(batch)
    grads = torch.autograd.grad(loss, params)
    direction = [torch.randn_like(p) for p in params]
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * 1e-6 * d)
        learner.order_generator.set_state(state)  # the same sequences
        values.append(float(learner.meta_loss(batch)[0].detach()))
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * 1e-6 * d)
    assert analytic == pytest.approx((values[0] - values[1]) / 2e-6, rel=1e-5)


def test_sequence_shows_labels_one_step_late_and_counts_instances():
    learner, batch = tiny_mann(), random_image_batch(ways=3, shots=1, size=4)
    seen = {}

    def record(inputs, previous):
        seen["inputs"], seen["previous"] = inputs, previous
        return inputs[..., :3]  # logits = the first three pixels of each step's image

    learner.network.forward = record
    seq = learner.sequences(batch)
    labels = seq["labels"]
    assert seen["previous"][:, 0].abs().sum() == 0
    torch.testing.assert_close(seen["previous"][:, 1:].argmax(-1), labels[:, :-1])
    for t in range(2):  # every class appears shots + queries times, counted 1, 2, 3 in order
        for c in range(3):
            assert seq["instance"][t][labels[t] == c].tolist() == [1, 2, 3]
    # predict gives the logits of the steps where the query items appeared, in query order
    torch.testing.assert_close(learner.predict(batch), batch.query_x.flatten(2)[..., :3])
    extra = learner.extra_metrics(batch)
    assert sorted(extra) == [f"instance_{k}_accuracy" for k in (1, 2, 3)]


def test_evaluation_orders_repeat_and_training_orders_advance():
    learner, batch = tiny_mann(), random_image_batch(ways=3, shots=1, size=4)
    learner.eval()
    with torch.no_grad():
        first = learner.sequences(batch)["position"]
    learner.train()
    training = learner.sequences(batch)["position"]
    learner.eval()
    with torch.no_grad():
        again = learner.sequences(batch)["position"]
    assert torch.equal(first, again)
    learner.train()
    assert not torch.equal(learner.sequences(batch)["position"], training)


def test_shipped_config_runs_on_synthetic_sequences(tmp_path):
    overrides = [
        "data.dataset=synthetic",
        "data.image_size=16",
        "data.val_split=null",
        "learner_options={ways: 5, controller_size: 32, memory_slots: 16, memory_width: 8, read_heads: 2}",
        "iterations=4",
        "outer_lr=0.003",
        "meta_batch_size=8",
        "eval_episodes=40",
        "checkpoint_every=4",
        f"run_root={tmp_path}",
    ]
    config = load_config(FewShotConfig, config_file("fewshot/mann-omniglot-5way"), overrides)
    result = runner.train(config, progress=False, echo=lambda _: None)
    extra = result["extra"]
    assert set(extra) == {f"instance_{k}_accuracy" for k in range(1, 11)}
    # A class's first appearance can only be guessed among 5 labels (the network cannot know it yet).
    assert extra["instance_1_accuracy"]["mean"] < 0.45
    assert math.isfinite(result["mean"]) and result["episodes"] == 40

"""Straightforward reference training steps for the few-shot learners that have no public implementation that runs
here (MANN, Meta-LSTM, MetaNet, meta-transfer learning), timed against metarl by ``scripts/bench_fewshot.py``.

Each reference computes the same meta-loss as the metarl learner it is given (it reads that learner's modules,
so both start from the same weights), the way a first implementation would: one task (one sequence, one support
example) at a time, ``torch.autograd.grad`` per task, Python loops where the paper's equations have an index.
:func:`check_same_loss` asserts the losses agree before anything is timed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.mann import MemoryAugmentedNetwork
from metarl.supervised.learners.meta_lstm import MetaLSTM, preprocess
from metarl.supervised.learners.metanet import MetaNetwork, augmented
from metarl.supervised.learners.mtl import MetaTransferLearner

LossFn = Callable[[EpisodeBatch], torch.Tensor]


def training_step(learner: torch.nn.Module, loss_fn: LossFn) -> Callable[[EpisodeBatch], None]:
    """An Adam step on ``loss_fn(batch)`` over ``learner``'s trainable parameters."""
    optimizer = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], 1e-3)

    def step(batch: EpisodeBatch) -> None:
        optimizer.zero_grad()
        loss_fn(batch).backward()
        optimizer.step()

    return step


def check_same_loss(learner: torch.nn.Module, loss_fn: LossFn, batch: EpisodeBatch) -> None:
    """Raise if the reference loss differs from the learner's meta-loss on ``batch`` (the learner's random
    generators, e.g. MANN's sequence orders, are rewound so that both see the same draws)."""
    generators = learner.generators() if callable(getattr(learner, "generators", None)) else {}
    states = {name: g.get_state() for name, g in generators.items()}
    ours, _ = learner.meta_loss(batch)
    for name, g in generators.items():
        g.set_state(states[name])
    # float32 over unrolled inner loops in another summation order: about 1e-4 relative at full-size batches
    torch.testing.assert_close(loss_fn(batch), ours, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------------- MANN


def mann_loss(learner: MemoryAugmentedNetwork) -> LossFn:
    """Each sequence alone, the LRUA memory as a Python list of slots (the paper's equations slot by slot).

    Uses the learner's own training orders, so that its generator is consumed as ``meta_loss`` would.
    """
    net = learner.network

    def sequence_logits(inputs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        slots, width, heads = net.slots, net.width, net.heads
        h = inputs.new_zeros(1, net.controller.hidden_size)
        c = torch.zeros_like(h)
        memory = [inputs.new_full((width,), 1e-6) for _ in range(slots)]
        w_read = [[1.0 if i == 0 else 0.0 for i in range(slots)] for _ in range(heads)]
        usage = [float(heads) if i == 0 else 0.0 for i in range(slots)]
        reads = inputs.new_zeros(heads * width)
        outputs = []
        for t in range(inputs.shape[0]):
            h, c = net.controller(torch.cat([inputs[t], previous[t], reads]).unsqueeze(0), (h, c))
            keys = torch.tanh(net.keys(h)[0]).view(heads, width)
            adds = torch.tanh(net.adds(h)[0]).view(heads, width)
            gates = torch.sigmoid(net.write_gates(h)[0])
            smallest = sorted(range(slots), key=lambda i: (usage[i], i))[:heads]  # ties to the lower index
            least_used = [1.0 if i in smallest else 0.0 for i in range(slots)]
            oldest = min(range(slots), key=lambda i: (usage[i], i))
            memory[oldest] = torch.zeros_like(memory[oldest])
            w_write = [
                [gates[r] * w_read[r][i] + (1 - gates[r]) * least_used[i] for i in range(slots)]
                for r in range(heads)
            ]
            memory = [memory[i] + sum(w_write[r][i] * adds[r] for r in range(heads)) for i in range(slots)]
            new_reads = []
            for r in range(heads):
                sims = torch.stack([F.cosine_similarity(keys[r], m, dim=0, eps=1e-8) for m in memory])
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

    def loss(batch: EpisodeBatch) -> torch.Tensor:
        images = torch.cat([batch.support_x, batch.query_x], 1).flatten(2)
        labels = torch.cat([batch.support_y, batch.query_y], 1)
        total = images.new_zeros(())
        for t in range(batch.num_tasks):
            order = torch.randperm(labels.shape[1], generator=learner.order_generator)
            x, y = images[t, order], labels[t, order]
            one_hot = F.one_hot(y, learner.ways).to(x.dtype)
            previous = torch.cat([torch.zeros_like(one_hot[:1]), one_hot[:-1]])
            total = total + F.cross_entropy(sequence_logits(x, previous), y)
        return total / batch.num_tasks

    return loss


# ----------------------------------------------------------------------------------------------- Meta-LSTM


def meta_lstm_loss(learner: MetaLSTM) -> LossFn:
    """Each task alone: ``functional_call`` of the learner network, ``autograd.grad`` of its support loss, the
    coordinate-wise LSTM over that task's parameter vector, the cell-state update ``c = f*c - i*g``."""
    model = learner.model
    first_order = learner.first_order

    def task_loss(support_x, support_y, query_x, query_y) -> torch.Tensor:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        c = torch.cat([params[n].reshape(-1) for n in names])
        i_prev = f_prev = c.new_zeros(c.shape)
        state = None
        for _ in range(learner.inner_steps):
            current = dict(zip(names, _split(c, [params[n] for n in names]), strict=True))
            loss = F.cross_entropy(torch.func.functional_call(model, current, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, list(current.values()), create_graph=not first_order)
            g = torch.cat([gr.reshape(-1) for gr in grads])
            loss_in = loss.detach() if first_order else loss
            features = torch.cat([preprocess(g), preprocess(loss_in).expand(g.shape[0], 2)], -1)
            state = learner.input_lstm(features, state)
            i_t, f_t = learner.gates(state[0], c, i_prev, f_prev)
            i_prev, f_prev = i_t, f_t
            c = f_t * c - i_t * g
        current = dict(zip(names, _split(c, [params[n] for n in names]), strict=True))
        return F.cross_entropy(torch.func.functional_call(model, current, (query_x,)), query_y)

    def loss(batch: EpisodeBatch) -> torch.Tensor:
        losses = [
            task_loss(batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t])
            for t in range(batch.num_tasks)
        ]
        return torch.stack(losses).mean()

    return loss


def _split(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    pieces = flat.split([p.numel() for p in like])
    return [piece.view_as(p) for piece, p in zip(pieces, like, strict=True)]


# ------------------------------------------------------------------------------------------------- MetaNet


def metanet_loss(learner: MetaNetwork) -> LossFn:
    """Each task alone, and each support example's output-layer gradient from its own ``autograd.grad`` call."""
    graph = not learner.first_order

    def task_loss(support_x, support_y, query_x, query_y) -> torch.Tensor:
        features = learner.encoder.embed(torch.cat([support_x, query_x]))
        support, query = features[: len(support_y)], features[len(support_y) :]
        q = learner.representation
        embedding_loss = learner.embedding_loss(F.relu(support @ q).unsqueeze(0), support_y.unsqueeze(0))
        (q_grad,) = torch.autograd.grad(embedding_loss, q, create_graph=graph)
        memory = []
        for i in range(len(support_y)):
            logits = support[i] @ learner.output_weight + learner.output_bias
            (w_grad,) = torch.autograd.grad(
                F.cross_entropy(logits.unsqueeze(0), support_y[i : i + 1]),
                learner.output_weight,
                create_graph=graph,
            )
            memory.append(learner.example_generator(w_grad))
        fast_q = learner.task_generator(q_grad)
        keys = augmented(support.unsqueeze(0), q, fast_q.unsqueeze(0))[0]
        queries = augmented(query.unsqueeze(0), q, fast_q.unsqueeze(0))[0]
        rows = []
        for m in range(len(query_y)):
            attention = F.cosine_similarity(queries[m].unsqueeze(0), keys, dim=-1, eps=1e-8).softmax(0)
            fast_w = sum(a * w for a, w in zip(attention, memory, strict=True))
            rows.append(query[m] @ learner.output_weight + learner.output_bias + query[m] @ fast_w)
        return F.cross_entropy(torch.stack(rows), query_y)

    def loss(batch: EpisodeBatch) -> torch.Tensor:
        losses = [
            task_loss(batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t])
            for t in range(batch.num_tasks)
        ]
        return torch.stack(losses).mean()

    return loss


# ------------------------------------------------------------------------------------------------------ MTL


def mtl_loss(learner: MetaTransferLearner) -> LossFn:
    """Each task alone: scaled-and-shifted backbone by ``functional_call``, the classifier's inner loop by
    ``autograd.grad(create_graph=True)`` on that task's copy of the classifier."""

    def task_loss(support_x, support_y, query_x, query_y) -> torch.Tensor:
        params = learner.scaled_and_shifted()
        features = torch.func.functional_call(learner.encoder, params, (torch.cat([support_x, query_x]),))
        support, query = features[: len(support_y)], features[len(support_y) :]
        weight, bias = learner.classifier.weight, learner.classifier.bias
        for _ in range(learner.inner_steps):
            inner = F.cross_entropy(support @ weight.T + bias, support_y)
            grad_w, grad_b = torch.autograd.grad(inner, (weight, bias), create_graph=True)
            weight, bias = weight - learner.inner_lr * grad_w, bias - learner.inner_lr * grad_b
        return F.cross_entropy(query @ weight.T + bias, query_y)

    def loss(batch: EpisodeBatch) -> torch.Tensor:
        losses = [
            task_loss(batch.support_x[t], batch.support_y[t], batch.query_x[t], batch.query_y[t])
            for t in range(batch.num_tasks)
        ]
        return torch.stack(losses).mean()

    return loss

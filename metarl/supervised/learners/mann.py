"""Memory-augmented neural networks (Santoro, Bartunov, Botvinick, Wierstra & Lillicrap, ICML 2016).

An LSTM controller reads and writes an external memory; one episode is a *sequence*: the items of the episode
in random order, each image shown together with the label of the previous step (the paper's "labels one step
late"), so the network must bind an image to its label in memory when the label arrives and retrieve it when
the class comes back. Classes are relabelled per episode by the sampler, so nothing about a class survives
between episodes except what the network learned about how to use its memory.

At step ``t`` (paper section 3, notation in comments):

* controller input ``[x_t, y_{t-1}, r_{t-1}]`` -> LSTM -> ``h_t``; each head emits a key ``k_t = tanh(W_k h_t)``,
  an add vector ``a_t = tanh(W_add h_t)`` and a write gate ``alpha_t = W_alpha h_t``.
* read: ``w^r_t = softmax_i cos(k_t, M_t(i))`` and ``r_t = sum_i w^r_t(i) M_t(i)``.
* least-recently-used access (LRUA): usage ``w^u_t = gamma w^u_{t-1} + w^r_t + w^w_t``; the least-used weights
  ``w^lu_t(i) = 1`` for the ``n`` slots of smallest usage (``n`` = read heads, ties to the lower index), else 0; write
  weights ``w^w_t = sigmoid(alpha_t) w^r_{t-1} + (1 - sigmoid(alpha_t)) w^lu_{t-1}`` interpolate between the
  slot just read (update a memory) and an unused slot (a new memory); before writing, the least-used slot is
  erased, then ``M_t(i) = M_{t-1}(i) + w^w_t(i) a_t``.
* output ``softmax(W_o [h_t, r_t])`` over the episode's classes; the loss is the cross-entropy of every step.

The paper writes the key itself (``M_t(i) = M_{t-1}(i) + w^w_t(i) k_t``, linear keys); the two public
reproductions (tristandeleu/ntm-one-shot in Theano, snowkylin/ntm in TensorFlow) write a separate ``tanh`` add
vector and squash the key with ``tanh``, and so does this one. (Over the first 1,200 iterations at Adam 1e-4
the two forms learned the same; what made recall appear was Adam 1e-3, see ``fewshot/mann-omniglot-5way``.)

How this fits the few-shot runner (the one run loop, config and evaluation): an episode of the sampler with
``shots + queries`` instances per class *is* the paper's sequence (5 classes x 10 instances = ``ways=5, shots=1,
queries=9``); the learner shuffles its items into one sequence. Meta-training minimises the loss of all steps;
:meth:`predict` returns the logits at the steps of the query items (the runner's accuracy); :meth:`extra_metrics`
gives the paper's table, accuracy by instance (the 1st, 2nd, ... time a class appears). Training orders come
from the learner's generator (saved in checkpoints); evaluation orders from a generator reset whenever the
learner enters eval mode, so every evaluation sees the same sequences.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner

EVAL_ORDER_SEED = 20160519  # any fixed number: evaluation sequences must not depend on training


class LRUAMemory(nn.Module):
    """The paper's controller, memory and heads, run over a batch of sequences.

    Args:
        input_size: features of one image (flattened pixels).
        ways: classes of an episode (the one-hot label size and the number of outputs).
        controller_size: LSTM units (200 in the paper).
        memory_slots: memory rows (128).
        memory_width: entries per row (40).
        read_heads: read heads (4).
        usage_decay: gamma of the usage weights (0.95).
    """

    def __init__(
        self,
        input_size: int,
        ways: int,
        controller_size: int = 200,
        memory_slots: int = 128,
        memory_width: int = 40,
        read_heads: int = 4,
        usage_decay: float = 0.95,
    ):
        super().__init__()
        if read_heads >= memory_slots:
            raise UserError(f"read_heads ({read_heads}) must be fewer than memory_slots ({memory_slots})")
        self.ways, self.slots, self.width, self.heads = ways, memory_slots, memory_width, read_heads
        self.usage_decay = usage_decay
        self.controller = nn.LSTMCell(input_size + ways + read_heads * memory_width, controller_size)
        self.keys = nn.Linear(controller_size, read_heads * memory_width)
        self.adds = nn.Linear(controller_size, read_heads * memory_width)
        self.write_gates = nn.Linear(controller_size, read_heads)
        self.output = nn.Linear(controller_size + read_heads * memory_width, ways)

    def forward(self, inputs: torch.Tensor, previous_labels: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, ways)`` of sequences ``inputs`` ``(B, T, input_size)`` whose step ``t`` also shows
        ``previous_labels[:, t]`` ``(B, T, ways)`` (one-hot of the label of step ``t - 1``, zeros at ``t = 0``)."""
        batch, steps = inputs.shape[:2]
        dtype = inputs.dtype
        hidden = inputs.new_zeros(batch, self.controller.hidden_size)
        cell = torch.zeros_like(hidden)
        memory = torch.full((batch, self.slots, self.width), 1e-6, dtype=dtype)
        first_slot = F.one_hot(torch.zeros(batch, self.heads, dtype=torch.long), self.slots).to(dtype)
        read_weights = first_slot  # w^r_{t-1}, (B, heads, slots)
        usage = first_slot.sum(1)  # w^u_{t-1}, (B, slots)
        reads = inputs.new_zeros(batch, self.heads * self.width)
        outputs = []
        for t in range(steps):
            hidden, cell = self.controller(
                torch.cat([inputs[:, t], previous_labels[:, t], reads], 1), (hidden, cell)
            )
            keys = torch.tanh(self.keys(hidden)).view(batch, self.heads, self.width)
            adds = torch.tanh(self.adds(hidden)).view(batch, self.heads, self.width)
            gate = torch.sigmoid(self.write_gates(hidden)).unsqueeze(-1)  # sigmoid(alpha_t), (B, heads, 1)
            least_used = self.least_used(usage)  # w^lu_{t-1}
            write_weights = gate * read_weights + (1 - gate) * least_used.unsqueeze(1)
            # Erase the least-used slot, then add each head's add vector with its write weights.
            erase = F.one_hot(usage.argmin(1), self.slots).to(dtype).unsqueeze(-1)
            memory = memory * (1 - erase) + write_weights.transpose(1, 2) @ adds
            similarity = F.cosine_similarity(keys.unsqueeze(2), memory.unsqueeze(1), dim=-1, eps=1e-8)
            read_weights = similarity.softmax(-1)
            reads = (read_weights @ memory).flatten(1)
            usage = self.usage_decay * usage + read_weights.sum(1) + write_weights.sum(1)
            outputs.append(self.output(torch.cat([hidden, reads], 1)))
        return torch.stack(outputs, 1)

    def least_used(self, usage: torch.Tensor) -> torch.Tensor:
        """``w^lu``: 1 at the n slots of smallest usage (n = read heads; ties go to the lower index), else 0;
        ``(B, slots)``.

        The paper's "1 where the usage is at most the n-th smallest" marks *every* slot tied at the n-th value:
        in a fresh memory all unused slots are tied at 0, so each write went to all of them, their usages stayed
        tied, and the memory held one blurred sum of every key. Exactly n slots, as the reference
        implementations pick them (tristandeleu's ``argsort``, snowkylin's ``top_k``), keeps one write per step
        in its own slots. (Fixing this alone did not lift training off 30% accuracy at Adam 1e-4; Adam 1e-3 did.)"""
        order = torch.sort(usage, dim=1, stable=True).indices[:, : self.heads]
        return torch.zeros_like(usage).scatter_(1, order, 1.0)


class MemoryAugmentedNetwork(FewShotLearner):
    """MANN with LRUA memory on the sequence form of episodes (see the module docstring).

    Args:
        backbone: the run's backbone; only its ``in_channels`` and ``image_size`` are read (the paper's
            network sees raw pixels), defaults 1 and 28.
        ways: classes per episode (the label and output size; the paper: 5).
        controller_size, memory_slots, memory_width, read_heads, usage_decay: as :class:`LRUAMemory`.
        order_seed: seed of the generator that orders training sequences.
    """

    def __init__(
        self,
        backbone: nn.Module | None = None,
        ways: int = 5,
        controller_size: int = 200,
        memory_slots: int = 128,
        memory_width: int = 40,
        read_heads: int = 4,
        usage_decay: float = 0.95,
        order_seed: int = 0,
    ):
        super().__init__()
        if ways < 2:
            raise UserError(f"ways must be >= 2, got {ways}")
        channels = getattr(backbone, "in_channels", 1)
        side = getattr(backbone, "image_size", 28)
        self.network = LRUAMemory(
            channels * side * side, ways, controller_size, memory_slots, memory_width, read_heads, usage_decay
        )
        self.ways = ways
        self.order_generator = torch.Generator().manual_seed(order_seed)
        self.eval_generator = torch.Generator().manual_seed(EVAL_ORDER_SEED)
        self._last: tuple[EpisodeBatch, dict[str, torch.Tensor]] | None = None

    def generators(self) -> dict[str, torch.Generator]:
        """The training-order generator, saved in checkpoints for exact resumption."""
        return {"order": self.order_generator}

    def train(self, mode: bool = True) -> MemoryAugmentedNetwork:
        """Switch mode; entering eval mode restarts the evaluation orders (the same sequences every time)."""
        if not mode:
            self.eval_generator.manual_seed(EVAL_ORDER_SEED)
        self._last = None
        return super().train(mode)

    def sequences(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """Run every episode of ``batch`` as one shuffled sequence.

        Returns:
            ``logits`` ``(tasks, T, ways)``, ``labels`` ``(tasks, T)``, ``instance`` ``(tasks, T)`` (1 for a
            class's first appearance), ``is_query`` ``(tasks, T)`` and ``position`` ``(tasks, T)``: the index
            of each step's item in the concatenation ``[support, query]``.
        """
        if batch.ways != self.ways:
            raise UserError(f"this MANN outputs {self.ways} classes but the episode has {batch.ways} ways")
        if self._last is not None and self._last[0] is batch:
            return self._last[1]
        images = torch.cat([batch.support_x, batch.query_x], 1).flatten(2)
        labels = torch.cat([batch.support_y, batch.query_y], 1)
        tasks, steps = labels.shape
        generator = self.order_generator if self.training else self.eval_generator
        position = torch.stack([torch.randperm(steps, generator=generator) for _ in range(tasks)])
        images, labels = (
            images.gather(1, position.unsqueeze(-1).expand_as(images)),
            labels.gather(1, position),
        )
        one_hot = F.one_hot(labels, self.ways).to(images.dtype)
        previous = torch.cat([torch.zeros_like(one_hot[:, :1]), one_hot[:, :-1]], 1)
        logits = self.network(images, previous)
        instance = (one_hot.cumsum(1) * one_hot).sum(-1).long()
        out = {
            "logits": logits,
            "labels": labels,
            "instance": instance,
            "is_query": position >= batch.support_y.shape[1],
            "position": position,
        }
        if not self.training and not torch.is_grad_enabled():
            self._last = (batch, out)
        return out

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of every step of the sequences (the paper's objective) and its accuracy."""
        seq = self.sequences(batch)
        loss = F.cross_entropy(seq["logits"].flatten(0, 1), seq["labels"].flatten())
        accuracy = (seq["logits"].argmax(-1) == seq["labels"]).float().mean()
        return loss, {"accuracy": float(accuracy)}

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Logits ``(tasks, N*Q, ways)`` at the steps where the query items appeared, in query order."""
        seq = self.sequences(batch)
        n_support = batch.support_y.shape[1]
        step_of = seq["position"].argsort(1)  # step at which item i of [support, query] appeared
        query_steps = step_of[:, n_support:]
        return seq["logits"].gather(1, query_steps.unsqueeze(-1).expand(-1, -1, self.ways))

    def extra_metrics(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """Accuracy by instance, ``instance_<k>_accuracy`` ``(tasks,)``: over the k-th appearances of classes."""
        seq = self.sequences(batch)
        correct = (seq["logits"].argmax(-1) == seq["labels"]).double()
        metrics = {}
        for k in range(1, batch.shots + batch.queries + 1):
            at_k = (seq["instance"] == k).double()
            metrics[f"instance_{k}_accuracy"] = (correct * at_k).sum(1) / at_k.sum(1)
        return metrics

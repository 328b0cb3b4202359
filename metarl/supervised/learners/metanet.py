"""Meta Networks (Munkhdalai & Yu, "Meta Networks", ICML 2017).

A base learner and a meta learner, each with *slow* weights (learned across tasks by the outer optimizer) and
*fast* weights (generated within a task from meta-information, here loss gradients):

1. Task-level fast weights of the representation function ``u``: the support set's embedding loss (a
   contrastive loss on support pairs, ``sigmoid(s * cos(r_i, r_j))`` against "same class", as in the paper)
   gives gradients of ``u``'s slow weights ``Q``; the generator ``d`` maps them to fast weights ``Q*``.
2. Example-level fast weights of the base learner ``b``: each support example's classification loss gives the
   gradient of ``b``'s slow output weights ``W``; the generator ``m`` maps it to fast weights ``W*_i``, stored in
   a memory with the key ``r_i = u(x_i)``, computed with ``Q`` and ``Q*``.
3. A query ``x`` reads the memory by attention: ``a = softmax_i cos(r_i, u(x))``, ``W*(x) = sum_i a_i W*_i``,
   and the base learner predicts with its slow and fast weights together (layer augmentation: the outputs of
   the slow and the fast layer are added; ``relu`` on the representation layer, none on the output layer).

The loss is the cross-entropy of the queries; every slow weight (encoder, ``Q``, ``W``, ``m``, ``d``) is trained
by it. Gradients come from :func:`metarl.core.loss_gradients` on per-example copies of ``W`` (a sum of
per-example losses gives each copy its own example's gradient). ``m`` and ``d`` are coordinate-wise networks on
gradients preprocessed as in Andrychowicz et al. (the paper's choice), shared over coordinates: ``m`` an MLP,
``d`` the same form (the paper's ``d`` is an LSTM over a sequence of T sampled examples; with one embedding loss
over all support pairs the sequence has one step, where an LSTM reduces to a feed-forward map).

Simplifications, stated: ``b`` and ``u`` share the convolutional body (slow weights only; the paper gives each its
own network), and fast weights exist for ``u``'s representation layer and ``b``'s output layer (the paper also
augments hidden layers). ``first_order=True`` (default) treats the meta-information as constants, so no
second-order terms are computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metarl.core import loss_gradients
from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.meta_lstm import preprocess
from metarl.supervised.learners.protonet import encode_tasks, flat_embedding, prefer_channels_last


class FastWeightGenerator(nn.Module):
    """A coordinate-wise network from gradients to fast weights: ``preprocess(g) -> hidden -> 1``.

    Args:
        hidden: hidden units (shared by every coordinate).
    """

    def __init__(self, hidden: int = 20):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, gradient: torch.Tensor) -> torch.Tensor:
        """Fast weights shaped like ``gradient``."""
        return self.net(preprocess(gradient)).squeeze(-1)


def augmented(inputs: torch.Tensor, slow: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
    """The representation layer with layer augmentation: ``relu(x Q) + relu(x Q*)``, ``(tasks, n, R)`` from
    ``inputs`` ``(tasks, n, D)``, ``slow`` ``(D, R)`` and per-task ``fast`` ``(tasks, D, R)``."""
    return F.relu(inputs @ slow) + F.relu(inputs @ fast)


class MetaNetwork(FewShotLearner):
    """MetaNet with gradient meta-information, fast-weight memory and attention (see the module docstring).

    Args:
        encoder: the convolutional body (e.g. ``Conv4`` without head), slow weights only.
        ways: classes per episode (the base learner's outputs).
        representation_dim: size of ``u``'s representation layer.
        generator_hidden: hidden units of the fast-weight generators ``m`` and ``d``.
        contrastive_scale: ``s`` of the embedding loss's ``sigmoid(s * cos)``.
        first_order: meta-information (gradients) enters ``m`` and ``d`` as constants.
    """

    def __init__(
        self,
        encoder: nn.Module,
        ways: int = 5,
        representation_dim: int = 64,
        generator_hidden: int = 20,
        contrastive_scale: float = 5.0,
        first_order: bool = True,
    ):
        super().__init__()
        dim = getattr(encoder, "embedding_dim", None)
        if not dim:
            raise UserError("MetaNet needs an encoder with an embedding_dim (e.g. Conv4 without head)")
        if ways < 2:
            raise UserError(f"ways must be >= 2, got {ways}")
        self.encoder = prefer_channels_last(encoder)
        self.ways = ways
        self.representation = nn.Parameter(torch.randn(dim, representation_dim) / dim**0.5)  # Q
        self.output_weight = nn.Parameter(torch.randn(dim, ways) / dim**0.5)  # W
        self.output_bias = nn.Parameter(torch.zeros(ways))
        self.task_generator = FastWeightGenerator(generator_hidden)  # d
        self.example_generator = FastWeightGenerator(generator_hidden)  # m
        self.contrastive_scale = float(contrastive_scale)
        self.first_order = bool(first_order)

    def embedding_loss(self, keys: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sum over tasks of the mean contrastive loss over support pairs ``i < j``."""
        n = keys.shape[1]
        cos = F.cosine_similarity(keys.unsqueeze(2), keys.unsqueeze(1), dim=-1)
        same = (labels.unsqueeze(2) == labels.unsqueeze(1)).to(keys.dtype)
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        if not bool(upper.any()):
            return keys.sum() * 0
        losses = F.binary_cross_entropy_with_logits(
            self.contrastive_scale * cos[:, upper], same[:, upper], reduction="none"
        )
        return losses.mean(1).sum()

    def fast_weights(self, support: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Q*, W*)``: task-level fast weights of ``u`` ``(tasks, D, R)`` and the memory of example-level fast
        weights of ``b`` ``(tasks, n, D, ways)``, from support features ``(tasks, n, D)``."""
        tasks, n = labels.shape
        slow_q = self.representation.expand(tasks, *self.representation.shape)
        q_grad = loss_gradients(
            {"Q": slow_q}, self.embedding_loss(F.relu(support @ slow_q), labels), first_order=self.first_order
        )["Q"]
        per_example_w = self.output_weight.expand(tasks, n, *self.output_weight.shape)
        logits = torch.einsum("tnd,tndw->tnw", support, per_example_w) + self.output_bias
        losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")
        w_grad = loss_gradients({"W": per_example_w}, losses, first_order=self.first_order)["W"]
        return self.task_generator(q_grad), self.example_generator(w_grad)

    def logits(self, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Query logits ``(tasks, m, ways)`` from support and query features ``(tasks, n|m, D)``."""
        fast_q, memory = self.fast_weights(support, support_y)
        keys = augmented(support, self.representation, fast_q)
        queries = augmented(query, self.representation, fast_q)
        attention = F.cosine_similarity(queries.unsqueeze(2), keys.unsqueeze(1), dim=-1, eps=1e-8).softmax(-1)
        fast_w = torch.einsum("tmn,tndw->tmdw", attention, memory)
        slow = query @ self.output_weight + self.output_bias
        return slow + torch.einsum("tmd,tmdw->tmw", query, fast_w)

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Query logits after writing the support set to memory (gradients are computed even under no_grad)."""
        if batch.ways != self.ways:
            raise UserError(f"this MetaNet outputs {self.ways} classes but the episode has {batch.ways} ways")
        with torch.enable_grad():
            support, query = encode_tasks(flat_embedding(self.encoder), batch)
            logits = self.logits(support, batch.support_y, query)
        return logits if torch.is_grad_enabled() else logits.detach()

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.predict(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), batch.query_y.flatten())
        return loss, {"accuracy": float((logits.argmax(-1) == batch.query_y).float().mean())}

"""Matching Networks (Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, NeurIPS 2016).

A query is labelled by attention over the support set: ``P(y | x, S) = sum_i a(x, x_i) y_i`` with
``a(x, x_i) = softmax_i(c(f(x), g(x_i)))``. Without full context embeddings (FCE) ``f = g`` is the encoder.
With FCE, ``g`` runs a bidirectional LSTM over the support embeddings (``g(x_i) = h_fwd + h_bwd + g'(x_i)``)
and ``f`` refines each query embedding with an attention LSTM that reads the support set for ``fce_steps`` steps
(the paper's equations (3)-(5), appendix A.2).

The loss is the negative log-likelihood of the attention-weighted label distribution.

The similarity ``c`` (``similarity`` option):

- ``"cosine"``: the paper's cosine similarity of ``f(x)`` and ``g(x_i)``. It is bounded, and a Conv4 embedding
  ends in a ReLU, so it lies in [0, 1]: with one shot per class the attention on the right support item is at
  most ``e / (e + N - 1)`` (0.40 in 5-way), the loss cannot fall below ``-log`` of that, and learning is slow
  (80% on Omniglot 5-way 1-shot after 3000 episodes where the others give 97%).
- ``"support_normalised"``: ``f(x) . g(x_i) / |g(x_i)|``, cosine with only the support embedding normalised,
  so the query's norm is a learned inverse temperature of the softmax; the widely used reference
  implementation of Matching Networks (AntreasAntoniou/MatchingNetworks, ``DistanceNetwork``) computes this.
  The ranking of support items for a query, hence the 1-shot prediction, is the cosine one.
- ``"squared_euclidean"``: ``-|f(x) - g(x_i)|^2`` (the "l2" of oscarknagg/few-shot, which reproduces the
  paper's Omniglot numbers with it and not with cosine).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from metarl.errors import UserError
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.base import FewShotLearner
from metarl.supervised.learners.protonet import (
    encode_tasks,
    flat_embedding,
    prefer_channels_last,
    squared_euclidean,
)

_LOG_EPS = 1e-8
_NORM_EPS = 1e-8  # as F.cosine_similarity's eps: an all-zero embedding has similarity 0

Similarity = Literal["cosine", "support_normalised", "squared_euclidean"]
SIMILARITIES = ("cosine", "support_normalised", "squared_euclidean")


def similarities(query: torch.Tensor, support: torch.Tensor, kind: Similarity = "cosine") -> torch.Tensor:
    """Similarities ``(tasks, Q, S)`` of query embeddings ``(tasks, Q, D)`` to support embeddings ``(tasks, S, D)``.

    ``kind`` is one of :data:`SIMILARITIES` (see the module docstring).
    """
    if kind == "cosine":
        return F.cosine_similarity(query.unsqueeze(2), support.unsqueeze(1), dim=-1)
    if kind == "support_normalised":
        unit_support = support / support.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
        return torch.einsum("tqd,tsd->tqs", query, unit_support)
    if kind == "squared_euclidean":
        return -squared_euclidean(query, support)
    raise UserError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {kind!r}")


class SupportContextEmbedding(nn.Module):
    """``g``: a bidirectional LSTM over the support embeddings, with a skip connection from the input."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)

    def forward(self, support: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.lstm(support)  # (tasks, S, 2*dim): forward and backward hidden states
        forward_h, backward_h = outputs.chunk(2, dim=-1)
        return support + forward_h + backward_h


class QueryAttentionEmbedding(nn.Module):
    """``f``: an LSTM whose state ``[h, r]`` holds the previous attention read-out ``r`` over the support set.

    Each step: ``h^, c = LSTM(f'(x), [h_{k-1}, r_{k-1}], c_{k-1})``, ``h_k = h^ + f'(x)``,
    ``r_k = sum_i softmax(h_k . g(x_i)) g(x_i)``.
    """

    def __init__(self, dim: int, steps: int):
        super().__init__()
        if steps < 1:
            raise UserError(f"fce_steps must be >= 1, got {steps}")
        self.steps = steps
        # One affine map of [input, h, r] to the four gates: an LSTM cell whose hidden input is [h, r].
        self.gates = nn.Linear(3 * dim, 4 * dim)

    def forward(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(query)
        c = torch.zeros_like(query)
        readout = torch.zeros_like(query)
        for _ in range(self.steps):
            i, f, g, o = self.gates(torch.cat([query, h, readout], dim=-1)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c) + query
            attention = torch.einsum("tqd,tsd->tqs", h, support).softmax(-1)
            readout = torch.einsum("tqs,tsd->tqd", attention, support)
        return h


class MatchingNetwork(FewShotLearner):
    """Matching Networks: softmax attention over the support set and optional full context embeddings.

    Args:
        encoder: the embedding network (``embed`` method if present, else its flattened output).
        embedding_dim: size of the flat embedding (used only with ``full_context_embeddings``; default: the
            encoder's ``embedding_dim`` attribute, as ``Conv4`` has).
        full_context_embeddings: condition embeddings on the whole support set (bidirectional LSTM for the
            support, attention LSTM for queries).
        fce_steps: read-out steps of the query attention LSTM.
        similarity: ``"cosine"`` (the paper), ``"support_normalised"`` or ``"squared_euclidean"`` (see the
            module docstring: plain cosine trains slowly).
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_dim: int | None = None,
        full_context_embeddings: bool = False,
        fce_steps: int = 5,
        similarity: Similarity = "cosine",
    ):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise UserError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}")
        self.similarity = similarity
        self.encoder = prefer_channels_last(encoder)
        self.full_context_embeddings = full_context_embeddings
        if full_context_embeddings:
            embedding_dim = embedding_dim or getattr(encoder, "embedding_dim", None)
            if embedding_dim is None or embedding_dim < 1:
                raise UserError(
                    "full_context_embeddings=True needs embedding_dim (the encoder's flat output size, 64 for Conv4 "
                    f"on 28x28 Omniglot); got {embedding_dim!r}"
                )
            self.support_context = SupportContextEmbedding(embedding_dim)
            self.query_context = QueryAttentionEmbedding(embedding_dim, fce_steps)

    def attention(self, batch: EpisodeBatch) -> torch.Tensor:
        """Attention weights ``(tasks, N*Q, N*K)`` of each query over the support items (rows sum to 1)."""
        support, query = encode_tasks(flat_embedding(self.encoder), batch)
        if self.full_context_embeddings:
            support = self.support_context(support)
            query = self.query_context(query, support)
        return similarities(query, support, self.similarity).softmax(dim=-1)

    def class_probabilities(self, batch: EpisodeBatch) -> torch.Tensor:
        """``P(y | x, S)`` ``(tasks, N*Q, ways)``: the attention mass on each class's support items."""
        one_hot = F.one_hot(batch.support_y, batch.ways).to(batch.support_x.dtype)
        return torch.einsum("tqs,tsw->tqw", self.attention(batch), one_hot)

    def predict(self, batch: EpisodeBatch) -> torch.Tensor:
        """Log-probabilities of the classes (usable as logits: their softmax is ``P(y | x, S)``)."""
        return torch.log(self.class_probabilities(batch) + _LOG_EPS)

    def meta_loss(self, batch: EpisodeBatch) -> tuple[torch.Tensor, dict[str, float]]:
        log_probs = self.predict(batch)
        loss = F.nll_loss(log_probs.flatten(0, 1), batch.query_y.flatten())
        accuracy = (log_probs.argmax(-1) == batch.query_y).float().mean()
        return loss, {"accuracy": float(accuracy)}

"""Metric learners: ProtoNet, Matching and Relation networks (values by hand, learning on synthetic episodes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.matching import MatchingNetwork
from metarl.supervised.learners.protonet import PrototypicalNetwork, class_means
from metarl.supervised.learners.relation import RelationNetwork


def random_batch(
    gen: torch.Generator, tasks: int, ways: int, shots: int, queries: int, size: int = 8
) -> EpisodeBatch:
    support_y = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).clone()
    query_y = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).clone()
    return EpisodeBatch(
        torch.rand(tasks, ways * shots, 1, size, size, generator=gen),
        support_y,
        torch.rand(tasks, ways * queries, 1, size, size, generator=gen),
        query_y,
        ways,
        shots,
        queries,
    )


def nuisance_episodes(
    gen: torch.Generator, tasks: int, ways: int, shots: int, queries: int, signal: int = 4
) -> EpisodeBatch:
    """8x8 "images" whose first ``signal`` pixels carry a per-class Gaussian mean and the other 60 loud noise.

    Fresh classes every episode, so only a learned embedding that discards the nuisance pixels generalises;
    a random embedding mixes them in and is near chance.
    """
    means = torch.randn(tasks, ways, signal, generator=gen)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).clone()
        informative = means[torch.arange(tasks)[:, None], y] + 0.3 * torch.randn(
            tasks, ways * per_class, signal, generator=gen
        )
        nuisance = 2.0 * torch.randn(tasks, ways * per_class, 64 - signal, generator=gen)
        return torch.cat([informative, nuisance], -1).view(tasks, ways * per_class, 1, 8, 8), y

    support_x, support_y = draw(shots)
    query_x, query_y = draw(queries)
    return EpisodeBatch(support_x, support_y, query_x, query_y, ways, shots, queries)


def template_episodes(gen: torch.Generator, tasks: int, ways: int, shots: int, queries: int) -> EpisodeBatch:
    """8x8 images: a random template per class (fresh classes every episode) plus Gaussian pixel noise."""
    templates = torch.rand(tasks, ways, 64, generator=gen)

    def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(ways).repeat_interleave(per_class).expand(tasks, -1).clone()
        x = templates[torch.arange(tasks)[:, None], y] + 0.3 * torch.randn(
            tasks, ways * per_class, 64, generator=gen
        )
        return x.view(tasks, ways * per_class, 1, 8, 8), y

    support_x, support_y = draw(shots)
    query_x, query_y = draw(queries)
    return EpisodeBatch(support_x, support_y, query_x, query_y, ways, shots, queries)


def mlp_encoder(out: int = 16) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, out))


def test_protonet_logits_are_negative_squared_distances_to_class_means_by_hand():
    gen = torch.Generator().manual_seed(0)
    batch = random_batch(gen, tasks=2, ways=3, shots=4, queries=2, size=3)
    # Shuffle the support order of task 1: prototypes must follow labels, not positions.
    perm = torch.randperm(12, generator=gen)
    batch = EpisodeBatch(
        torch.stack([batch.support_x[0], batch.support_x[1, perm]]),
        torch.stack([batch.support_y[0], batch.support_y[1, perm]]),
        batch.query_x,
        batch.query_y,
        3,
        4,
        2,
    )
    model = PrototypicalNetwork(nn.Flatten())  # embeddings are the raw pixels
    logits = model.predict(batch)
    assert logits.shape == (2, 6, 3)
    for t in range(2):
        for q in range(6):
            for c in range(3):
                members = [batch.support_x[t, i].flatten() for i in range(12) if batch.support_y[t, i] == c]
                prototype = sum(members) / len(members)
                expected = -((batch.query_x[t, q].flatten() - prototype) ** 2).sum()
                assert logits[t, q, c].item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-5)


def test_class_means_rejects_a_class_without_support():
    with pytest.raises(ValueError, match="at least one support example"):
        class_means(torch.zeros(1, 2, 4), torch.tensor([[0, 0]]), ways=2)


def test_protonet_cosine_distance_is_scaled_cosine_similarity():
    gen = torch.Generator().manual_seed(1)
    batch = random_batch(gen, tasks=1, ways=2, shots=1, queries=1, size=2)
    logits = PrototypicalNetwork(nn.Flatten(), distance="cosine", cosine_scale=5.0).predict(batch)
    expected = 5.0 * F.cosine_similarity(
        batch.query_x[0, 0].flatten(), batch.support_x[0, 1].flatten(), dim=0
    )
    assert logits[0, 0, 1].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="distance"):
        PrototypicalNetwork(nn.Flatten(), distance="manhattan")  # type: ignore[arg-type]


def train_episodes(model: nn.Module, steps: int, seed: int, lr: float = 1e-2, ways: int = 5) -> None:
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        model.train_step(nuisance_episodes(gen, tasks=4, ways=ways, shots=1, queries=5), optimizer)


def test_protonet_learns_to_ignore_nuisance_pixels_on_unseen_classes():
    torch.manual_seed(0)
    model = PrototypicalNetwork(mlp_encoder())
    test = nuisance_episodes(torch.Generator().manual_seed(123), tasks=50, ways=5, shots=1, queries=5)
    before = model.accuracy(test).mean().item()
    train_episodes(model, steps=300, seed=0)
    after = model.accuracy(test).mean().item()
    assert before < 0.35  # chance is 0.2
    assert after > 0.8


def test_protonet_training_is_deterministic_given_seeds():
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        model = PrototypicalNetwork(mlp_encoder())
        train_episodes(model, steps=5, seed=7)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])


def test_matching_attention_is_cosine_softmax_by_hand_and_sums_to_one():
    gen = torch.Generator().manual_seed(2)
    batch = random_batch(gen, tasks=2, ways=3, shots=2, queries=2, size=3)
    model = MatchingNetwork(nn.Flatten())
    attention = model.attention(batch)
    assert attention.shape == (2, 6, 6)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 6))
    for t in range(2):
        for q in range(6):
            query = batch.query_x[t, q].flatten()
            cos = torch.stack(
                [F.cosine_similarity(query, batch.support_x[t, i].flatten(), dim=0) for i in range(6)]
            )
            torch.testing.assert_close(attention[t, q], cos.softmax(0), rtol=1e-5, atol=1e-6)
    # Class probability = attention mass on the class's support items; logits are its log.
    probabilities = model.class_probabilities(batch)
    torch.testing.assert_close(probabilities[..., 1], attention[..., 2] + attention[..., 3])
    torch.testing.assert_close(model.predict(batch).exp(), probabilities, rtol=1e-5, atol=1e-6)


def test_matching_support_normalised_and_euclidean_similarities_by_hand():
    gen = torch.Generator().manual_seed(3)
    batch = random_batch(gen, tasks=2, ways=3, shots=1, queries=2, size=3)
    for similarity in ("support_normalised", "squared_euclidean"):
        attention = MatchingNetwork(nn.Flatten(), similarity=similarity).attention(batch)
        for t in range(2):
            for q in range(6):
                query = batch.query_x[t, q].flatten()
                scores = []
                for i in range(3):
                    support = batch.support_x[t, i].flatten()
                    if similarity == "support_normalised":  # the query's norm stays: a learned temperature
                        scores.append(
                            sum(a * b for a, b in zip(query, support, strict=True)) / support.norm()
                        )
                    else:
                        scores.append(-sum((a - b) ** 2 for a, b in zip(query, support, strict=True)))
                torch.testing.assert_close(
                    attention[t, q], torch.stack(scores).softmax(0), rtol=1e-5, atol=1e-6
                )
    # Support-normalised attention ranks support items as cosine does, but is sharper for a long query.
    plain = MatchingNetwork(nn.Flatten()).attention(batch)
    scaled = MatchingNetwork(nn.Flatten(), similarity="support_normalised").attention(batch)
    assert torch.equal(plain.argmax(-1), scaled.argmax(-1))
    assert bool((scaled.amax(-1) > plain.amax(-1)).all())
    with pytest.raises(ValueError, match="similarity must be one of cosine, support_normalised"):
        MatchingNetwork(nn.Flatten(), similarity="dot")


def test_matching_full_context_embeddings_attention_is_a_distribution_and_depends_on_the_support_set():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(4)
    batch = random_batch(gen, tasks=2, ways=3, shots=1, queries=2)
    model = MatchingNetwork(mlp_encoder(8), embedding_dim=8, full_context_embeddings=True, fce_steps=3)
    attention = model.attention(batch)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 6))
    # The query embedding is conditioned on the support set: changing one support image changes every row.
    other = EpisodeBatch(
        batch.support_x.clone().index_fill_(1, torch.tensor([2]), 0.5),
        *(batch.support_y, batch.query_x, batch.query_y, 3, 1, 2),
    )
    changed = (model.attention(other)[..., :2] - attention[..., :2]).abs().amax(-1)
    assert bool((changed > 1e-6).all())
    loss, _ = model.meta_loss(batch)
    loss.backward()
    assert model.query_context.gates.weight.grad.abs().sum() > 0
    assert model.support_context.lstm.weight_ih_l0.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="embedding_dim"):
        MatchingNetwork(nn.Flatten(), full_context_embeddings=True)


def test_matching_network_learns_the_nuisance_problem():
    torch.manual_seed(0)
    model = MatchingNetwork(mlp_encoder())
    test = nuisance_episodes(torch.Generator().manual_seed(123), tasks=50, ways=5, shots=1, queries=5)
    before = model.accuracy(test).mean().item()
    train_episodes(model, steps=300, seed=0)
    assert model.accuracy(test).mean().item() > max(0.7, before + 0.3)


class TinyMapEncoder(nn.Module):
    """A conv encoder with a ``feature_map`` method: 1x8x8 images to 4x4x4 maps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_relation_scores_shape_range_and_class_maps_sum_the_shots():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(5)
    batch = random_batch(gen, tasks=2, ways=3, shots=2, queries=4)
    model = RelationNetwork(TinyMapEncoder(), feature_shape=(4, 4, 4))
    scores = model.predict(batch)
    assert scores.shape == (2, 12, 3)
    assert bool(((scores > 0) & (scores < 1)).all())
    with pytest.raises(ValueError, match="feature_shape"):
        RelationNetwork(TinyMapEncoder(), feature_shape=(4, 2, 2)).predict(batch)


def test_relation_network_training_reduces_loss_and_beats_chance():
    torch.manual_seed(0)
    model = RelationNetwork(TinyMapEncoder(), feature_shape=(4, 4, 4))
    test = template_episodes(torch.Generator().manual_seed(123), tasks=20, ways=5, shots=1, queries=5)
    with torch.no_grad():
        loss_before, metrics_before = model.meta_loss(test)
    gen = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(100):
        model.train_step(template_episodes(gen, tasks=4, ways=5, shots=1, queries=5), optimizer)
    with torch.no_grad():
        loss_after, metrics = model.meta_loss(test)
    assert loss_after.item() < 0.5 * loss_before.item()
    assert metrics_before["accuracy"] < 0.35  # chance 0.2
    assert metrics["accuracy"] > 0.6


def test_relation_network_on_conv4_keeps_sungs_unpooled_last_blocks():
    from metarl.supervised.models import Conv4

    torch.manual_seed(0)
    encoder = Conv4(in_channels=1, image_size=28)
    model = RelationNetwork(encoder)  # pooled_blocks=2: 28 -> 14 -> 7 -> 7 -> 7
    assert model.feature_shape == (64, 7, 7)
    x = torch.rand(3, 1, 28, 28)
    by_hand = encoder.features[1](encoder.features[0](x))
    for block in encoder.features[2:]:
        by_hand = block[:-1](by_hand)  # conv, batch norm, ReLU; no pooling
    from metarl.supervised.learners.relation import spatial_features

    torch.testing.assert_close(spatial_features(encoder, 2)(x), by_hand)
    assert RelationNetwork(Conv4(image_size=28), pooled_blocks=4).feature_shape == (64, 1, 1)
    with pytest.raises(ValueError, match="Conv4-like encoder"):
        RelationNetwork(nn.Flatten(), feature_shape=(1, 2, 2)).predict(
            random_batch(torch.Generator(), 1, 2, 1, 1)
        )


def test_metric_learners_build_from_the_registry_around_the_runs_conv4():
    from metarl.supervised.learners import build_learner
    from metarl.supervised.models import Conv4

    torch.manual_seed(0)
    batch = random_batch(torch.Generator().manual_seed(0), tasks=2, ways=3, shots=1, queries=2, size=28)
    for name, options in [
        ("protonet", {}),
        ("matching", {"full_context_embeddings": True}),
        ("relation", {}),
        ("siamese", {"distort": True}),
    ]:
        learner = build_learner(name, Conv4(image_size=28), options)
        assert learner.predict(batch).shape == (2, 6, 3), name
        stats = learner.train_step(batch, torch.optim.Adam(learner.parameters(), 1e-3))
        assert torch.isfinite(torch.tensor(stats["loss"])), name


def test_metric_learners_run_conv_encoders_in_channels_last_with_unchanged_values():
    """The channels_last layout (a speed choice) gives the logits of the same Conv4 in the default layout."""
    import copy

    from metarl.supervised.models import Conv4

    gen = torch.Generator().manual_seed(3)
    encoder = Conv4(1, hidden=8)
    reference = copy.deepcopy(encoder)
    learner = PrototypicalNetwork(encoder)
    conv = learner.encoder.features[1][0].weight  # the second block's convolution
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    batch = random_batch(gen, tasks=2, ways=3, shots=2, queries=2, size=28)
    expected = []
    for t in range(2):  # support and query share one batch-norm pass, as in encode_tasks
        features = reference.embed(torch.cat([batch.support_x[t], batch.query_x[t]]))
        support, query = features[:6], features[6:]
        prototypes = class_means(support.unsqueeze(0), batch.support_y[t : t + 1], 3)[0]
        expected.append(-(query.unsqueeze(1) - prototypes.unsqueeze(0)).pow(2).sum(-1))
    torch.testing.assert_close(learner.predict(batch), torch.stack(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_train_step_in_task_chunks_gives_the_same_update(chunk):
    """Gradients accumulated over chunks of tasks equal one backward pass over the whole batch."""
    from metarl.supervised.models import Conv4

    batch = random_batch(torch.Generator().manual_seed(7), tasks=5, ways=3, shots=1, queries=2)
    batch = EpisodeBatch(
        batch.support_x.double(), batch.support_y, batch.query_x.double(), batch.query_y, 3, 1, 2
    )
    results = []
    for backward_chunk in (None, chunk):
        torch.manual_seed(0)
        learner = PrototypicalNetwork(Conv4(1, 8, hidden=4, blocks=2).double())
        learner.backward_chunk = backward_chunk
        before = [p.detach().clone() for p in learner.parameters()]
        metrics = learner.train_step(batch, torch.optim.SGD(learner.parameters(), lr=0.5))
        results.append((metrics, [p.detach().clone() for p in learner.parameters()]))
    (whole, whole_params), (chunked, chunked_params) = results
    assert any(not torch.equal(a, b) for a, b in zip(before, whole_params, strict=True))
    assert chunked.keys() == whole.keys() == {"loss", "accuracy"}
    for key in whole:
        assert chunked[key] == pytest.approx(whole[key], rel=1e-6)
    for a, b in zip(whole_params, chunked_params, strict=True):
        torch.testing.assert_close(a, b)

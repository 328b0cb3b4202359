"""Siamese networks (Koch et al. 2015): pair sampler, verification loss, one-shot nearest-support logic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.siamese import (
    AffineDistortion,
    KochTwin,
    SiameseNetwork,
    VerificationPairSampler,
)


def labelled_dataset(classes: int = 6, per_class: int = 5) -> ClassIndexedDataset:
    """Every pixel of sample ``i`` of class ``c`` holds ``10 * c + i``, so pixels reveal class and sample."""
    values = np.array(
        [[10 * c + i for i in range(per_class)] for c in range(classes)], dtype=np.uint8
    ).reshape(-1)
    images = np.broadcast_to(values[:, None, None, None], (classes * per_class, 1, 2, 2)).copy()
    return ClassIndexedDataset(images, np.arange(classes + 1) * per_class, [f"c{c}" for c in range(classes)])


def test_pair_sampler_is_balanced_and_pairs_are_what_they_claim():
    dataset = labelled_dataset()
    sampler = VerificationPairSampler(dataset, pairs_per_batch=64, seed=0)
    labels = dataset.labels
    seen_classes = set()
    for _ in range(20):
        left, right, same = sampler.sample_indices()
        assert same.sum() == 32 and len(same) == 64
        np.testing.assert_array_equal(labels[left] == labels[right], same.astype(bool))
        # Same-class pairs are two different drawings, never an image paired with itself.
        assert bool((left != right).all())
        seen_classes |= set(labels[left].tolist()) | set(labels[right].tolist())
    assert seen_classes == set(range(6))
    # Shuffled: same and different pairs are interleaved, not two blocks.
    assert np.abs(np.diff(same)).sum() > 2
    left_x, right_x, same_t = sampler.sample()
    assert left_x.shape == (64, 1, 2, 2) and left_x.dtype == torch.float32
    np.testing.assert_array_equal(
        ((left_x[:, 0, 0, 0] * 255).round() // 10 == (right_x[:, 0, 0, 0] * 255).round() // 10).numpy(),
        same_t.bool().numpy(),
    )


def test_pair_sampler_is_seeded_and_rejects_odd_batches():
    dataset = labelled_dataset()
    a = VerificationPairSampler(dataset, 16, seed=3).sample_indices()
    b = VerificationPairSampler(dataset, 16, seed=3).sample_indices()
    c = VerificationPairSampler(dataset, 16, seed=4).sample_indices()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    with pytest.raises(ValueError, match="even"):
        VerificationPairSampler(dataset, 15)


class PixelTwin(nn.Module):
    """Embeddings = the raw pixels, so verification logits are readable by hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def distance_model(dim: int) -> SiameseNetwork:
    """A Siamese net whose logit is minus the L1 distance: the most similar support item wins."""
    model = SiameseNetwork(PixelTwin(), twin="backbone", embedding_dim=dim)
    with torch.no_grad():
        model.distance_weights.weight.fill_(-1.0)
        model.distance_weights.bias.zero_()
    return model


def test_one_shot_prediction_is_the_class_of_the_nearest_support_item():
    # 3 classes x 2 shots of 1x1x2 "images"; the support is deliberately not grouped by class.
    support_x = torch.tensor([[0.0, 0.0], [6.0, 2.0], [9.0, 0.0], [0.0, 9.0], [1.0, 1.0], [4.0, 6.0]])
    support_y = torch.tensor([0, 1, 2, 2, 0, 1])
    # Query 0 is nearest to (4, 6) (class 1). Query 1 is nearest to (9, 0) (class 2), although the nearest class
    # MEAN is class 1's (5, 4) (L1 7 against 8 for class 2's (4.5, 4.5)): nearest item, not nearest prototype.
    # Query 2 sits on (1, 1), class 0.
    query_x = torch.tensor([[4.0, 7.0], [8.0, 0.0], [1.0, 1.0]])
    batch = EpisodeBatch(
        support_x.view(1, 6, 1, 1, 2),
        support_y[None],
        query_x.view(1, 3, 1, 1, 2),
        torch.tensor([[1, 2, 0]]),
        3,
        2,
        1,
    )
    model = distance_model(2)
    scores = model.support_scores(batch)
    expected = -(query_x[:, None] - support_x[None]).abs().sum(-1)
    torch.testing.assert_close(scores[0], expected)
    logits = model.predict(batch)
    assert logits.shape == (1, 3, 3)
    # A class's logit is its best support item's score.
    torch.testing.assert_close(logits[0, 1], torch.tensor([-8.0, -4.0, -1.0]))
    assert logits.argmax(-1).tolist() == [[1, 2, 0]]
    assert model.accuracy(batch).item() == 1.0
    torch.testing.assert_close(SiameseNetwork.predict_from_scores(scores, batch), torch.tensor([[1, 2, 0]]))


def test_episode_loss_weighs_same_and_different_pairs_equally():
    gen = torch.Generator().manual_seed(0)
    ways, shots = 4, 1
    batch = EpisodeBatch(
        torch.rand(2, ways * shots, 1, 1, 3, generator=gen),
        torch.arange(ways).expand(2, -1).clone(),
        torch.rand(2, ways, 1, 1, 3, generator=gen),
        torch.arange(ways).expand(2, -1).clone(),
        ways,
        shots,
        1,
    )
    model = distance_model(3)
    loss, _ = model.meta_loss(batch)
    scores = model.support_scores(batch)
    same = torch.eye(ways).expand(2, -1, -1).bool()
    positives = F.binary_cross_entropy_with_logits(scores[same], torch.ones(8))
    negatives = F.binary_cross_entropy_with_logits(scores[~same], torch.zeros(24))
    assert loss.item() == pytest.approx(0.5 * positives.item() + 0.5 * negatives.item(), rel=1e-5)


def test_affine_distortion_is_seeded_keeps_shape_and_mass_roughly():
    image = torch.zeros(4, 1, 28, 28)
    image[:, :, 10:18, 12:16] = 1.0
    a = AffineDistortion(seed=1)(image)
    b = AffineDistortion(seed=1)(image)
    torch.testing.assert_close(a, b)
    assert a.shape == image.shape
    assert not torch.equal(a, image)
    # Scale 0.8-1.2 per axis and shear change the ink area by well under a factor of 2.
    ratio = a.sum((1, 2, 3)) / image.sum((1, 2, 3))
    assert bool(((ratio > 0.5) & (ratio < 2.0)).all())
    # With every range collapsed to the identity the grid samples the image back exactly.
    identity = AffineDistortion(rotation_degrees=0.0, shear=0.0, scale=(1.0, 1.0), translation=0.0)(image)
    torch.testing.assert_close(identity, image, atol=1e-5, rtol=0)


def test_koch_twin_embeds_28px_images_and_siamese_training_separates_pairs():
    torch.manual_seed(0)
    twin = KochTwin(hidden=32)
    assert twin(torch.zeros(3, 1, 28, 28)).shape == (3, 32)
    # Verification of synthetic classes: each class is a fixed random 8x8 pattern plus noise.
    gen = torch.Generator().manual_seed(0)
    templates = (torch.rand(20, 1, 8, 8, generator=gen) > 0.5).float()
    model = SiameseNetwork(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Sigmoid()), twin="backbone", embedding_dim=32
    )
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)

    def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        left = torch.randint(0, 20, (n,), generator=gen)
        same = torch.rand(n, generator=gen) < 0.5
        right = torch.where(same, left, (left + torch.randint(1, 20, (n,), generator=gen)) % 20)
        noise = lambda: 0.3 * torch.randn(n, 1, 8, 8, generator=gen)  # noqa: E731
        return templates[left] + noise(), templates[right] + noise(), same.float()

    test_left, test_right, test_same = pairs(400)
    with torch.no_grad():
        before = model.pair_loss(test_left, test_right, test_same).item()
    for _ in range(100):
        optimizer.zero_grad()
        model.pair_loss(*pairs(64)).backward()
        optimizer.step()
    with torch.no_grad():
        after = model.pair_loss(test_left, test_right, test_same).item()
        accuracy = (
            ((model.verification_logits(test_left, test_right) > 0).float() == test_same).float().mean()
        )
    assert after < 0.5 * before
    assert accuracy.item() > 0.9


def test_lake_oneshot_script_scores_a_run_on_the_twenty_runs(shared_data, tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    from metarl.supervised.config import FewShotConfig
    from metarl.supervised.runner import build_run_learner
    from metarl.training import load_config, save_checkpoint, save_config

    script = Path(__file__).resolve().parents[2] / "scripts" / "lake_oneshot.py"
    spec = importlib.util.spec_from_file_location("lake_oneshot", script)
    lake_oneshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lake_oneshot)
    omniglot = str(shared_data / "omniglot")
    config = load_config(
        FewShotConfig,
        None,
        ["learner=siamese", f"data.root={omniglot}", "data.split_scheme=lake", "data.train_split=background"],
    )
    save_config(config, tmp_path / "config.yaml")
    learner = build_run_learner(config)
    save_checkpoint(tmp_path / "checkpoint.pt", {"learner": learner.state_dict(), "iteration": 0})

    assert lake_oneshot.main([str(tmp_path), "--data-root", omniglot]) == 0
    result = json.loads((tmp_path / "lake_oneshot.json").read_text())
    assert result["trials"] == 400 and len(result["per_run_accuracy"]) == 20
    assert result["mean"] == pytest.approx(np.mean(result["per_run_accuracy"]))
    # Lake's runs: two per evaluation alphabet, 10 alphabets, each run within one alphabet.
    assert all(" + " not in a and a != "?" for a in result["alphabets"])
    assert sorted(set(result["alphabets"])) == sorted(result["alphabets"][::2])
    results_script = script.parent / "results.py"  # the result is extracted as a few-shot summary
    spec = importlib.util.spec_from_file_location("results", results_script)
    results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results)
    summary = results.summary_of(result)
    assert summary["task"] == "omniglot (Lake's within-alphabet runs) 20-way 1-shot"
    assert summary["learners"]["siamese"] == {"steps": [0], "mean": [result["mean"]], "ci": [result["ci95"]]}
    assert summary["protocol"] == {"episodes": 20, "queries": 1, "split": "evaluation"}

    out = tmp_path / "clean.json"
    assert (
        lake_oneshot.main(
            [str(tmp_path), "--data-root", omniglot, "--vinyals-test-only", "--output", str(out)]
        )
        == 0
    )
    clean = json.loads(out.read_text())
    assert 0 < len(clean["runs"]) < 20
    assert "Atlantean" not in clean["alphabets"]  # a Vinyals training alphabet

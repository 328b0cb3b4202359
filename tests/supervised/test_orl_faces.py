"""ORL faces: the subject-split loader on PGMs the test writes, verification AUC/EER against hand computations,
pair scores of Siamese and ProtoNet, and a run with verification metrics through the runner."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.errors import MissingFileError, UserError
from metarl.supervised import runner
from metarl.supervised.config import FewShotConfig
from metarl.supervised.data import ORLFaces, make_dataset
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.learners.protonet import PrototypicalNetwork
from metarl.supervised.learners.siamese import SiameseNetwork
from metarl.supervised.models import Conv4
from metarl.supervised.verification import equal_error_rate, roc_auc, verification_metrics
from metarl.training import RunDir, config_file, load_config

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "orl_faces"


def write_faces(
    root: Path, subjects: int = 30, per_subject: int = 3, size: tuple[int, int] = (92, 112)
) -> Path:
    """``root/s<n>/<i>.pgm``: 8-bit faces whose pixels hold ``subject``; rows outside the centre square hold 255
    and the first centre row ``i``, so a test can see the crop and the file order."""
    width, height = size
    top = (height - width) // 2
    for subject in range(1, subjects + 1):
        folder = root / f"s{subject}"
        folder.mkdir(parents=True)
        for i in range(1, per_subject + 1):
            pixels = np.full((height, width), subject, dtype=np.uint8)
            pixels[:top] = pixels[top + width :] = 255
            pixels[top] = i
            Image.fromarray(pixels).save(folder / f"{i}.pgm")
    return root


def test_loader_splits_subjects_crops_the_centre_and_orders_files_numerically(tmp_path):
    root = write_faces(tmp_path / "orl_faces", subjects=30, per_subject=10)
    train = ORLFaces(root, "train", image_size=92, resample="nearest")
    assert train.class_names == [f"s{n}" for n in range(1, 25)]
    assert train.image_shape == (1, 92, 92) and len(train) == 240
    # The crop removed the 255 rows above and below: only subject values and the first-row marks remain.
    assert int(train.class_images(4).max()) == 10
    np.testing.assert_array_equal(train.class_images(4)[:, 0, 1:, :], 5)  # subject 5, below the first row
    np.testing.assert_array_equal(
        train.class_images(0)[:, 0, 0, 0], np.arange(1, 11)
    )  # 1.pgm, 2.pgm, ..., 10.pgm
    assert ORLFaces(root, "val", image_size=92).class_names == ["s25", "s26", "s27", "s28"]
    assert ORLFaces(root, "test", image_size=92).class_names == ["s29", "s30"]
    small = make_dataset("orl_faces", tmp_path, "trainval", image_size=16)  # a parent data root works too
    assert small.num_classes == 28 and small.image_shape == (1, 16, 16)


def test_loader_errors_say_what_to_fix(tmp_path):
    with pytest.raises(MissingFileError, match="s1/ ... s40/"):
        ORLFaces(tmp_path, "train")
    root = write_faces(tmp_path / "orl", subjects=3)
    with pytest.raises(UserError, match="unknown ORL faces split 'dev'"):
        ORLFaces(root, "dev")
    with pytest.raises(UserError, match="no subjects for split 'test'"):
        ORLFaces(root, "test")


@pytest.mark.skipif(not SHARED.is_dir(), reason="ORL faces not in ../shared/data/orl_faces")
def test_shared_copy_has_the_documented_split():
    sizes = {split: ORLFaces(SHARED, split).num_classes for split in ("train", "val", "test")}
    assert sizes == {"train": 24, "val": 4, "test": 10}


def brute_force_auc(scores, positive) -> float:
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_and_eer_equal_hand_computations():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    positive = [1, 0, 1, 0, 0]
    # Positives 0.9 and 0.7 against negatives 0.8, 0.6, 0.5: 0.9 beats 3, 0.7 beats 2, of 6 comparisons.
    assert roc_auc(scores, positive) == pytest.approx(5 / 6)
    # Thresholds 0.8 -> (false accepts 1/3, false rejects 1/2), 0.7 -> (1/3, 0): false rejects fall through 1/3
    # while false accepts stay 1/3, so the rates are equal at 1/3; threshold 0.8's rates differ less (1/6 vs 1/3).
    eer, threshold = equal_error_rate(scores, positive)
    assert eer == pytest.approx(1 / 3) and threshold == 0.8
    assert roc_auc([1.0, 1.0, 0.0], [1, 0, 0]) == pytest.approx(0.75)  # a tie counts one half
    assert roc_auc([3, 2, 1], [1, 1, 0]) == 1.0 and equal_error_rate([3, 2, 1], [1, 1, 0])[0] == 0.0
    assert equal_error_rate([1, 2, 3], [1, 1, 0])[0] == 1.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, p = rng.integers(0, 6, 15).astype(float), rng.random(15) < 0.4
        if p.any() and not p.all():
            assert roc_auc(s, p) == pytest.approx(brute_force_auc(s, p))
    with pytest.raises(UserError, match="positive and negative"):
        roc_auc([1.0, 2.0], [1, 1])


def episode(ways=3, queries=2, size=28, seed=0) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways)
    return EpisodeBatch(
        torch.rand(2, ways, 1, size, size, generator=gen),
        labels.expand(2, -1).clone(),
        torch.rand(2, ways * queries, 1, size, size, generator=gen),
        labels.repeat_interleave(queries).expand(2, -1).clone(),
        ways,
        1,
        queries,
    )


def test_verification_metrics_use_same_class_pairs_of_each_episode():
    batch = episode(ways=3, queries=2)
    same = (batch.query_y.unsqueeze(2) == batch.support_y.unsqueeze(1)).double()
    scores = torch.stack([same, -same])  # episode 0 perfect, episode 1 inverted
    scores = scores[:, 0]
    metrics = verification_metrics(scores, batch)
    assert metrics["verification_auc"].tolist() == [1.0, 0.0]
    assert metrics["verification_eer"].tolist() == [0.0, 1.0]


def test_pair_scores_of_protonet_and_siamese():
    torch.manual_seed(0)
    batch = episode()
    proto = PrototypicalNetwork(Conv4(1, 28, ways=None, hidden=4)).eval()
    siamese = SiameseNetwork(twin="koch", embedding_dim=16).eval()
    with torch.no_grad():
        scores = proto.pair_scores(batch)
        for t in range(2):
            support, query = proto.embed(torch.cat([batch.support_x[t], batch.query_x[t]])).split([3, 6])
            torch.testing.assert_close(scores[t], -torch.cdist(query, support).pow(2), rtol=1e-4, atol=1e-4)
        # One shot: ProtoNet's logits are its pair scores (each prototype is the one support embedding).
        torch.testing.assert_close(proto.predict(batch), scores)
        torch.testing.assert_close(siamese.pair_scores(batch), siamese.support_scores(batch))


TINY = [
    "data.image_size=16",
    "data.ways=3",
    "data.queries=1",
    "data.eval_ways=2",
    "data.eval_queries=2",
    "iterations=2",
    "meta_batch_size=2",
    "eval_episodes=4",
    "eval_batch=2",
    "checkpoint_every=1",
]


@pytest.mark.parametrize("name", ["siamese-orl-faces", "protonet-orl-faces"])
def test_shipped_orl_configs_train_and_report_verification(tmp_path, name):
    root = write_faces(tmp_path / "orl", subjects=30, per_subject=3)
    options = ["learner_options={twin: koch, embedding_dim: 8}"] if name.startswith("siamese") else []
    overrides = [f"data.root={root}", f"run_root={tmp_path}", "model.hidden=4", *TINY, *options]
    config = load_config(FewShotConfig, config_file(f"fewshot/{name}"), overrides)
    assert config.verification and config.data.dataset == "orl_faces"
    result = runner.train(config, progress=False, echo=lambda _: None)
    assert set(result["extra"]) == {"verification_auc", "verification_eer"}
    assert 0.0 <= result["extra"]["verification_auc"]["mean"] <= 1.0


def test_verification_with_a_learner_without_pair_scores_is_a_user_error(tmp_path):
    config = load_config(
        FewShotConfig, None, ["learner=maml", "data.dataset=synthetic", "verification=true", *TINY[:2]]
    )
    with pytest.raises(UserError, match="verification=true needs a learner that scores pairs"):
        runner.build_run_learner(config)


def test_wrong_pairs_script_draws_the_misjudged_pairs(tmp_path):
    root = write_faces(tmp_path / "orl", subjects=30, per_subject=3)
    overrides = [f"data.root={root}", "model.hidden=4", *TINY]
    config = load_config(FewShotConfig, config_file("fewshot/protonet-orl-faces"), overrides)
    run = RunDir.create(tmp_path, "run")
    runner.train(config, run_dir=run, progress=False, echo=lambda _: None)
    script = Path(__file__).resolve().parents[2] / "scripts" / "orl_wrong_pairs.py"
    spec = importlib.util.spec_from_file_location("orl_wrong_pairs", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    wrong, threshold, scored = module.wrong_pairs(str(run.path), episodes=3)
    assert scored == 3 * 4 * 2  # 2-way 1-shot 2-query: 4 queries x 2 support items per episode
    for pair in wrong:
        assert pair["left"].shape == (16, 16) and pair["kind"] in ("false accept", "false reject")
    module.main([str(run.path), "--episodes", "3", "--output", str(tmp_path / "grid.png")])
    if wrong:
        assert Image.open(tmp_path / "grid.png").size[0] > 16

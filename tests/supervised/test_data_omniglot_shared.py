"""Omniglot on the real shared data (skipped when absent): the encoded Vinyals split and the paper's sizes.

Decoding the two zips takes ~10 s; the cache lives in one temp dir for this module, so it happens once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metarl.supervised.data import EpisodeSampler, Omniglot
from metarl.supervised.data.omniglot import main
from metarl.supervised.data.omniglot_splits import VINYALS_SPLITS, vinyals_characters
from metarl.supervised.data.registry import make_dataset

ROTATIONS = ("rot000", "rot090", "rot180", "rot270")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("omniglot-cache")


def reference_lines(shared_data: Path, split: str) -> list[str]:
    return (shared_data / "omniglot" / "splits" / "vinyals" / f"{split}.txt").read_text().splitlines()


@pytest.mark.parametrize("split", ["train", "val", "test", "trainval"])
def test_encoded_vinyals_split_equals_the_reference_files(shared_data, split):
    encoded = [f"{character}/{rotation}" for character in vinyals_characters(split) for rotation in ROTATIONS]
    assert encoded == reference_lines(shared_data, split)


@pytest.mark.parametrize(
    ("split", "characters"), [("train", 1028), ("val", 172), ("test", 423), ("trainval", 1200)]
)
def test_vinyals_split_sizes_and_class_order(shared_data, cache_dir, split, characters):
    dataset = Omniglot(shared_data / "omniglot", split, cache_dir=cache_dir)
    assert len(dataset.characters) == characters
    assert dataset.num_classes == 4 * characters and len(dataset) == 20 * 4 * characters
    assert (dataset.class_sizes == 20).all() and dataset.image_shape == (1, 28, 28)
    assert dataset.class_names == reference_lines(shared_data, split)
    assert dataset.images.dtype == np.uint8 and 0.03 < dataset.images.mean() / 255 < 0.3


def test_lake_split_has_all_1623_characters_and_vinyals_partitions_them(shared_data, cache_dir):
    root = shared_data / "omniglot"
    background = Omniglot(root, "background", split_scheme="lake", rotations=(0,), cache_dir=cache_dir)
    evaluation = Omniglot(root, "evaluation", split_scheme="lake", rotations=(0,), cache_dir=cache_dir)
    assert (len(background.characters), len(evaluation.characters)) == (964, 659)
    assert background.num_classes == 964 and (background.class_sizes == 20).all()
    assert len({c.split("/")[0] for c in background.characters}) == 30
    assert len({c.split("/")[0] for c in evaluation.characters}) == 20
    everything = set(background.characters) | set(evaluation.characters)
    assert len(everything) == 1623
    parts = [set(vinyals_characters(split)) for split in ("train", "val", "test")]
    assert set.union(*parts) == everything and sum(len(p) for p in parts) == 1623
    assert {alphabet for alphabet, _, _ in VINYALS_SPLITS["val"]} <= {
        c.split("/")[0] for c in background.characters
    }


def test_finn_split_shuffles_characters_across_alphabets(shared_data, cache_dir):
    root = shared_data / "omniglot"
    parts = {
        split: Omniglot(root, split, split_scheme="finn", rotations=(0,), cache_dir=cache_dir).characters
        for split in ("train", "val", "test", "trainval")
    }
    assert {split: len(c) for split, c in parts.items()} == {
        "train": 1100,
        "val": 100,
        "test": 423,
        "trainval": 1200,
    }
    assert parts["trainval"] == parts["train"] + parts["val"]
    assert len(set(parts["trainval"]) | set(parts["test"])) == 1623  # disjoint, and all of Omniglot
    alphabets = {split: {c.split("/")[0] for c in chars} for split, chars in parts.items()}
    assert len(alphabets["test"]) > 40 and alphabets["test"] <= alphabets["train"]  # unlike Vinyals' split
    # seeded: the same characters on every machine (recorded when the split was added)
    assert parts["test"][:3] == [
        "Manipuri/character12",
        "Malay_(Jawi_-_Arabic)/character09",
        "Malay_(Jawi_-_Arabic)/character24",
    ]


def test_rotated_classes_and_episodes_on_real_data(shared_data, cache_dir):
    dataset = Omniglot(shared_data / "omniglot", "val", cache_dir=cache_dir)
    upright = dataset.class_images(0)[:, 0]
    assert np.array_equal(dataset.class_images(1)[:, 0], np.rot90(upright, 1, axes=(1, 2)))
    assert not np.array_equal(dataset.class_images(1), dataset.class_images(0))
    batch = EpisodeSampler(dataset, ways=20, shots=1, queries=5, tasks_per_batch=4, seed=0).sample()
    assert batch.support_x.shape == (4, 20, 1, 28, 28) and batch.query_x.shape == (4, 100, 1, 28, 28)
    assert float(batch.support_x.max()) == 1.0 and float(batch.support_x.min()) == 0.0


def test_cache_warming_command_prints_split_sizes(shared_data, cache_dir, capsys):
    main(["--root", str(shared_data / "omniglot"), "--cache-dir", str(cache_dir)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:7] for line in lines] == [
        ["vinyals", "train", "1028", "characters", "4112", "classes", "82240"],
        ["vinyals", "val", "172", "characters", "688", "classes", "13760"],
        ["vinyals", "test", "423", "characters", "1692", "classes", "33840"],
        ["lake", "background", "964", "characters", "3856", "classes", "77120"],
        ["lake", "evaluation", "659", "characters", "2636", "classes", "52720"],
    ]


def test_make_dataset_reads_omniglot_from_the_shared_data_root(shared_data, cache_dir):
    dataset = make_dataset("omniglot", shared_data, "val", cache_dir=cache_dir)
    assert isinstance(dataset, Omniglot) and dataset.num_classes == 688


def test_within_alphabet_training_episodes_on_real_data(shared_data, cache_dir):
    from metarl.supervised.config import DataConfig
    from metarl.supervised.evaluate import make_task_source

    data = DataConfig(
        root=str(shared_data / "omniglot"),
        cache_dir=str(cache_dir),
        split_scheme="lake",
        ways=20,
        within_alphabet=True,
    )
    cache: dict = {}
    train = make_task_source(data, "background", 8, seed=0, evaluation=False, cache=cache)
    names = train.dataset.class_names
    batch = train.sample()
    alphabets = [{names[c].split("/")[0] for c in task} for task in batch.class_ids.tolist()]
    assert all(len(a) == 1 for a in alphabets) and len(set.union(*alphabets)) > 1
    test = make_task_source(data, "background", 8, seed=0, evaluation=True, cache=cache)
    mixed = [{names[c].split("/")[0] for c in task} for task in test.sample().class_ids.tolist()]
    assert all(len(a) > 1 for a in mixed)  # evaluation episodes keep the usual protocol

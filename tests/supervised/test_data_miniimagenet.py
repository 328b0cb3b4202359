"""miniImageNet on a synthetic miniature in both standard layouts (pickles; images/ + Ravi csvs)."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metarl.supervised.data import EpisodeSampler, MiniImageNet, imaging
from metarl.supervised.data.miniimagenet import RAVI_CLASS_COUNTS, _read_split_csv

CLASSES = ["n0300", "n0100", "n0500", "n0200", "n0400"]  # deliberately unsorted
PER_CLASS = 3


def synthetic_images() -> dict[str, np.ndarray]:
    """Smooth random images (JPEG keeps them close), ``{class: (PER_CLASS, 84, 84, 3) uint8}``."""
    rng = np.random.default_rng(0)
    grid = np.arange(84) / 84.0
    waves = np.sin(
        2 * np.pi * (grid[:, None, None] + grid[None, :, None])
        + rng.uniform(0, 6, (len(CLASSES), PER_CLASS, 1, 1, 3))
    )
    colors = rng.uniform(60, 190, size=(len(CLASSES), PER_CLASS, 1, 1, 3))
    pixels = np.clip(colors + 50 * waves, 0, 255).astype(np.uint8)
    return dict(zip(CLASSES, pixels, strict=True))


@pytest.fixture
def pickle_root(tmp_path: Path) -> Path:
    images = synthetic_images()
    order = np.random.default_rng(1).permutation(len(CLASSES) * PER_CLASS)  # classes interleaved in the file
    flat = np.concatenate([images[c] for c in CLASSES])
    image_data = np.empty_like(flat)
    image_data[order] = flat
    class_dict = {c: order[i * PER_CLASS : (i + 1) * PER_CLASS].tolist() for i, c in enumerate(CLASSES)}
    root = tmp_path / "pickles"
    root.mkdir()
    with open(root / "mini-imagenet-cache-train.pkl", "wb") as handle:
        pickle.dump({"image_data": image_data, "class_dict": class_dict}, handle)
    return root


def write_folder(root: Path, csv_path: Path) -> None:
    (root / "images").mkdir(parents=True)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for c, images in synthetic_images().items():
        for i, pixels in enumerate(images):
            filename = f"{c}{i + 1:08d}.jpg"
            Image.fromarray(pixels).save(root / "images" / filename, quality=95)
            rows.append((filename, c))
    with open(csv_path, "w", newline="") as handle:
        csv.writer(handle).writerows([("filename", "label"), *rows])


def test_pickle_layout_groups_images_by_sorted_class(pickle_root, tmp_path):
    dataset = MiniImageNet(pickle_root, "train", cache_dir=tmp_path / "cache")
    images = synthetic_images()
    assert dataset.class_names == sorted(CLASSES)
    assert dataset.class_sizes.tolist() == [PER_CLASS] * 5 and dataset.image_shape == (3, 84, 84)
    for i, c in enumerate(sorted(CLASSES)):
        assert np.array_equal(dataset.class_images(i), images[c].transpose(0, 3, 1, 2))
    batch = EpisodeSampler(dataset, ways=5, shots=1, queries=2, seed=0).sample()
    assert batch.support_x.shape == (1, 5, 3, 84, 84) and batch.query_x.shape == (1, 10, 3, 84, 84)


def test_pickle_resized_copy_is_cached(pickle_root, tmp_path, monkeypatch):
    small = MiniImageNet(pickle_root, "train", image_size=32, cache_dir=tmp_path / "cache")
    assert small.image_shape == (3, 32, 32)
    expected = Image.fromarray(synthetic_images()["n0100"][1]).resize((32, 32), Image.Resampling.LANCZOS)
    assert np.array_equal(small.class_images(0)[1], np.asarray(expected).transpose(2, 0, 1))
    monkeypatch.setattr(pickle, "load", lambda *a: pytest.fail("the pickle was read again"))
    again = MiniImageNet(pickle_root, "train", image_size=32, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.images, small.images) and again.class_names == small.class_names


@pytest.mark.parametrize("csv_place", ["root", "splits/ravi"])
def test_image_folder_layout_with_ravi_csv(tmp_path, monkeypatch, csv_place):
    root = tmp_path / "mini"
    write_folder(root, (root if csv_place == "root" else root / "splits" / "ravi") / "val.csv")
    dataset = MiniImageNet(root, "val", cache_dir=tmp_path / "cache")
    assert dataset.class_names == sorted(CLASSES)
    assert dataset.class_sizes.tolist() == [PER_CLASS] * 5 and dataset.image_shape == (3, 84, 84)
    with Image.open(root / "images" / "n030000000002.jpg") as image:
        expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(dataset.class_images(2)[1], expected)
    # JPEG is lossy, but the decoded pixels stay close to the originals.
    original = synthetic_images()["n0300"][1].transpose(2, 0, 1).astype(float)
    assert np.abs(dataset.class_images(2)[1] - original).mean() < 3
    monkeypatch.setattr(imaging.Image, "open", lambda *a, **k: pytest.fail("decoded a JPEG again"))
    cached = MiniImageNet(root, "val", cache_dir=tmp_path / "cache")
    assert isinstance(cached.images, np.memmap) and np.array_equal(cached.images, dataset.images)


def test_missing_data_and_bad_files_give_clear_errors(tmp_path, pickle_root):
    with pytest.raises(
        FileNotFoundError, match=r"mini-imagenet-cache-test\.pkl.*images/ folder with test\.csv"
    ):
        MiniImageNet(tmp_path, "test", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="unknown miniImageNet split"):
        MiniImageNet(pickle_root, "validation", cache_dir=tmp_path / "c")
    with open(pickle_root / "mini-imagenet-cache-val.pkl", "wb") as handle:
        pickle.dump({"images": np.zeros((1, 84, 84, 3), np.uint8)}, handle)
    with pytest.raises(ValueError, match="keys 'image_data' and 'class_dict'"):
        MiniImageNet(pickle_root, "val", cache_dir=tmp_path / "c")
    (pickle_root / "mini-imagenet-cache-test.pkl").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable pickle"):
        MiniImageNet(pickle_root, "test", cache_dir=tmp_path / "c")
    root = tmp_path / "mini"
    write_folder(root, root / "test.csv")
    (root / "images" / "n010000000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 images listed .* missing .*n010000000002\.jpg"):
        MiniImageNet(root, "test", cache_dir=tmp_path / "c")
    (root / "train.csv").write_text("name,class\nx.jpg,n01\n")
    with pytest.raises(ValueError, match="header 'filename,label'"):
        MiniImageNet(root, "train", cache_dir=tmp_path / "c")


def test_ravi_split_counts_match_the_docstring(shared_data):
    for split, classes in RAVI_CLASS_COUNTS.items():
        filenames, labels = _read_split_csv(shared_data / "miniimagenet" / "splits" / "ravi" / f"{split}.csv")
        assert len(set(labels)) == classes and len(filenames) == classes * 600
        assert all(labels.count(label) == 600 for label in set(labels))

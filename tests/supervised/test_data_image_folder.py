"""ImageFolderDataset: one sub-folder per class, decoded once into a memory-mapped cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metarl.supervised.data import EpisodeSampler, ImageFolderDataset, imaging


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for name, count in (("zebra", 2), ("apple", 3), ("mango", 4)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(30 + i, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"img{i}.png")
    (root / "apple" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / ".hidden" / "x.png")
    return root


def test_classes_sizes_and_pixels(folder, tmp_path):
    dataset = ImageFolderDataset(folder, image_size=16, channels=3, cache_dir=tmp_path / "cache")
    assert dataset.class_names == ["apple", "mango", "zebra"]
    assert dataset.class_sizes.tolist() == [3, 4, 2]
    assert dataset.image_shape == (3, 16, 16) and dataset.images.dtype == np.uint8
    with Image.open(folder / "mango" / "img2.png") as image:
        expected = np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.LANCZOS)).transpose(
            2, 0, 1
        )
    assert np.array_equal(dataset.class_images(1)[2], expected)
    gray = ImageFolderDataset(folder, image_size=12, channels=1, cache_dir=tmp_path / "cache")
    assert gray.image_shape == (1, 12, 12)
    with Image.open(folder / "zebra" / "img0.png") as image:
        expected = np.asarray(image.convert("L").resize((12, 12), Image.Resampling.LANCZOS))
    assert np.array_equal(gray.class_images(2)[0, 0], expected)
    batch = EpisodeSampler(dataset, ways=3, shots=1, queries=1, seed=0).sample()
    assert batch.support_x.shape == (1, 3, 3, 16, 16)


def test_second_load_is_memory_mapped_from_the_cache(folder, tmp_path, monkeypatch):
    first = ImageFolderDataset(folder, image_size=16, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(imaging.Image, "open", lambda *a, **k: pytest.fail("decoded an image again"))
    second = ImageFolderDataset(folder, image_size=16, cache_dir=tmp_path / "cache")
    assert isinstance(second.images, np.memmap)
    assert np.array_equal(first.images, second.images)


def test_a_changed_file_invalidates_the_cache(folder, tmp_path):
    first = ImageFolderDataset(folder, image_size=8, cache_dir=tmp_path / "cache")
    Image.fromarray(np.full((20, 20, 3), 7, dtype=np.uint8)).save(folder / "apple" / "img0.png")
    second = ImageFolderDataset(folder, image_size=8, cache_dir=tmp_path / "cache")
    assert (second.class_images(0)[0] == 7).all() and not np.array_equal(first.images, second.images)


def test_errors(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing", image_size=8, cache_dir=tmp_path / "c")
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="no class sub-folders.*root/<class name>/<image file>"):
        ImageFolderDataset(tmp_path / "flat", image_size=8, cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="channels must be 1"):
        ImageFolderDataset(folder, image_size=8, channels=2, cache_dir=tmp_path / "c")
    (folder / "zebra" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ValueError, match=r"cannot decode .*broken\.jpg"):
        ImageFolderDataset(folder, image_size=8, cache_dir=tmp_path / "c")

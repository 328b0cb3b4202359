"""The decode cache (location, atomic entries, damaged entries) and datasets by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metarl.errors import UserError
from metarl.supervised.data import ImageFolderDataset, cache
from metarl.supervised.data.registry import dataset_root, make_dataset


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("METARL_CACHE", str(tmp_path / "mine"))
    assert cache.default_cache_dir() == tmp_path / "mine"
    assert cache.resolve_cache_dir(None) == tmp_path / "mine"
    assert cache.resolve_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("METARL_CACHE")
    assert cache.default_cache_dir() == Path.home() / ".cache" / "metarl"


def test_entries_round_trip_and_builds_happen_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return np.arange(24, dtype=np.uint8).reshape(2, 3, 4), {"names": ["a", "b"]}

    first = cache.cached(tmp_path, "entry", build)
    second = cache.cached(tmp_path, "entry", build, mmap=True)
    assert len(calls) == 1 and isinstance(second[0], np.memmap)
    assert np.array_equal(first[0], second[0]) and second[1] == {"names": ["a", "b"]}


def test_an_interrupted_write_leaves_no_entry(tmp_path, monkeypatch):
    def failing_save(handle, array, allow_pickle):
        handle.write(b"half an array")
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        cache.save_entry(tmp_path, "entry", np.zeros((2, 2), np.uint8), {})
    assert list(tmp_path.iterdir()) == []
    assert cache.load_entry(tmp_path, "entry") is None


def test_an_entry_without_its_record_or_from_another_format_is_ignored(tmp_path):
    cache.save_entry(tmp_path, "entry", np.ones((2, 2), np.uint8), {"k": 1})
    record = (tmp_path / "entry.json").read_text()
    (tmp_path / "entry.json").write_text(record.replace(f'"format": {cache.CACHE_FORMAT}', '"format": 0'))
    assert cache.load_entry(tmp_path, "entry") is None
    (tmp_path / "entry.json").unlink()
    assert cache.load_entry(tmp_path, "entry") is None


def test_a_bit_flipped_entry_is_noticed_and_decoded_again(tmp_path):
    images = np.arange(64, dtype=np.uint8).reshape(4, 4, 4)
    cache.save_entry(tmp_path, "entry", images, {})
    data = bytearray((tmp_path / "entry.npy").read_bytes())
    data[-5] ^= 0x10  # one bit of the last image
    (tmp_path / "entry.npy").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert cache.load_entry(tmp_path, "entry", mmap=True) is None
    with pytest.warns(UserWarning, match="does not match its checksum"):
        rebuilt = cache.cached(tmp_path, "entry", lambda: (images, {}))
    assert np.array_equal(rebuilt[0], images) and cache.load_entry(tmp_path, "entry") is not None


def test_a_cache_folder_that_is_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "cache").write_text("a file")
    with pytest.raises(UserError, match="decoded-image cache"):
        cache.cached(tmp_path / "cache", "entry", lambda: (np.zeros((1, 1), np.uint8), {}))


def test_make_dataset_by_name_and_data_root(tmp_path):
    for split, classes in (("train", ("a", "b")), ("test", ("c",))):
        for name in classes:
            (tmp_path / "folders" / split / name).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "folders" / split / name / "0.png")
    dataset = make_dataset(
        "folder", tmp_path / "folders", "train", image_size=8, channels=1, cache_dir=tmp_path / "c"
    )
    assert isinstance(dataset, ImageFolderDataset) and dataset.class_names == ["a", "b"]
    with pytest.raises(ValueError, match="needs image_size"):
        make_dataset("folder", tmp_path / "folders", "train")
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*omniglot"):
        make_dataset("cifar", tmp_path, "train")
    (tmp_path / "data" / "omniglot").mkdir(parents=True)
    (tmp_path / "data" / "omniglot" / "images_background.zip").write_bytes(b"")
    assert dataset_root("omniglot", tmp_path / "data") == tmp_path / "data" / "omniglot"
    assert dataset_root("omniglot", tmp_path / "data" / "omniglot") == tmp_path / "data" / "omniglot"
    assert dataset_root("miniimagenet", tmp_path / "data") == tmp_path / "data"

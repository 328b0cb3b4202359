"""download=True: the fetch is served from a local file; md5 mismatches and failures leave no file behind."""

from __future__ import annotations

import hashlib
import io
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metarl.supervised.data import Omniglot, download


@pytest.fixture
def served_zip(tmp_path: Path) -> Path:
    """A tiny images_background.zip in the official layout (2 characters x 2 drawings)."""
    path = tmp_path / "served" / "images_background.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        for c in (1, 2):
            for d in (1, 2):
                paper = np.ones((105, 105), dtype=bool)
                paper[10 * c : 10 * c + 30, 20 * d : 20 * d + 5] = False
                buffer = io.BytesIO()
                Image.fromarray(paper).convert("1").save(buffer, format="PNG")
                archive.writestr(
                    f"images_background/Alpha/character{c:02d}/{c:04d}_{d:02d}.png", buffer.getvalue()
                )
    return path


@pytest.fixture
def fetches(monkeypatch, served_zip) -> list[str]:
    """Serve every URL from ``served_zip`` and record the URLs asked for."""
    urls: list[str] = []

    def open_local(url: str):
        urls.append(url)
        return open(served_zip, "rb")

    monkeypatch.setattr(download, "_open_url", open_local)
    return urls


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_with_matching_md5_installs_the_file(tmp_path, served_zip, fetches, monkeypatch):
    md5 = hashlib.md5(served_zip.read_bytes()).hexdigest()
    url = download.OMNIGLOT_FILES["images_background.zip"][0]
    monkeypatch.setitem(download.OMNIGLOT_FILES, "images_background.zip", (url, md5))
    root = tmp_path / "fresh" / "omniglot"
    dataset = Omniglot(root, "background", split_scheme="lake", download=True, cache_dir=tmp_path / "cache")
    assert fetches == ["https://github.com/brendenlake/omniglot/raw/master/python/images_background.zip"]
    assert leftovers(root) == ["images_background.zip"]
    assert (root / "images_background.zip").read_bytes() == served_zip.read_bytes()
    assert dataset.num_classes == 2 * 4 and len(dataset) == 2 * 4 * 2
    # The file is now local: a second load does not download again.
    Omniglot(root, "background", split_scheme="lake", download=True, cache_dir=tmp_path / "cache")
    assert len(fetches) == 1


def test_md5_mismatch_raises_and_leaves_no_partial_file(tmp_path, fetches):
    root = tmp_path / "omniglot"
    with pytest.raises(
        ValueError, match=r"md5 [0-9a-f]{32}, expected 68d2efa1b9178cc56df9314c21c6e718.*nothing was written"
    ):
        Omniglot(root, "background", split_scheme="lake", download=True, cache_dir=tmp_path / "cache")
    assert len(fetches) == 1
    assert leftovers(root) == []


def test_network_failure_and_interrupted_transfer_leave_no_file(tmp_path, monkeypatch, served_zip):
    def unreachable(url):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(download, "_open_url", unreachable)
    with pytest.raises(ConnectionError, match="could not download .*by hand"):
        download.download_omniglot_file(tmp_path / "a", "images_evaluation.zip")
    assert leftovers(tmp_path / "a") == []

    class BrokenStream(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 100:
                raise OSError("connection reset")
            return super().read(min(size, 64))

    monkeypatch.setattr(download, "_open_url", lambda url: BrokenStream(served_zip.read_bytes()))
    with pytest.raises(OSError, match="connection reset"):
        download.download_verified("https://example.invalid/x.zip", tmp_path / "b" / "x.zip", md5="0" * 32)
    assert leftovers(tmp_path / "b") == []


def test_official_sources_are_the_lake_repository():
    assert set(download.OMNIGLOT_FILES) == {"images_background.zip", "images_evaluation.zip"}
    for name, (url, md5) in download.OMNIGLOT_FILES.items():
        assert url == f"https://github.com/brendenlake/omniglot/raw/master/python/{name}" and len(md5) == 32
    with pytest.raises(ValueError, match="unknown Omniglot file"):
        download.download_omniglot_file(".", "images_small1.zip")

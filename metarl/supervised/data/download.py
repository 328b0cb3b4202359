"""Downloading dataset files with an md5 check; a failed or corrupt download leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from metarl.errors import UserError
from metarl.training.io import atomic_open

OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python"
# Official md5 sums of the files in Lake's repository (as checked by torchvision and learn2learn).
OMNIGLOT_FILES: dict[str, tuple[str, str]] = {
    "images_background.zip": (f"{OMNIGLOT_URL}/images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation.zip": (f"{OMNIGLOT_URL}/images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
}
LAKE_RUNS_URL = f"{OMNIGLOT_URL}/one-shot-classification/all_runs.zip"


def _open_url(url: str) -> BinaryIO:
    """A readable binary stream of ``url`` (a seam: tests replace it to serve a local file)."""
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 (fixed https URLs)


def download_verified(url: str, destination: str | os.PathLike, md5: str, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``destination`` and check its md5.

    The data goes to a temp file next to ``destination`` that is renamed into place only after the md5 matches,
    so an interrupted or corrupt download never leaves a partial file under the final name.

    Raises:
        ValueError: if the downloaded data's md5 differs from ``md5`` (nothing is written).
        ConnectionError: if the URL cannot be fetched.
    """
    destination = Path(destination)
    digest = hashlib.md5()
    with atomic_open(destination) as out:  # the temp file is removed if anything below raises
        try:
            with _open_url(url) as response:
                for chunk in iter(lambda: response.read(chunk_size), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, TimeoutError) as err:
            raise ConnectionError(
                f"could not download {url} ({err}); check the connection, or download it by hand to {destination}"
            ) from err
        if digest.hexdigest() != md5:
            raise UserError(
                f"the file downloaded from {url} has md5 {digest.hexdigest()}, expected {md5}: it is corrupt or "
                f"not the official file; nothing was written to {destination}. Retry, or download it by hand."
            )
    return destination


def download_omniglot_file(root: str | os.PathLike, filename: str) -> Path:
    """Fetch the official Omniglot file ``filename`` (see :data:`OMNIGLOT_FILES`) into ``root``."""
    if filename not in OMNIGLOT_FILES:
        raise UserError(f"unknown Omniglot file {filename!r}; choose one of {sorted(OMNIGLOT_FILES)}")
    url, md5 = OMNIGLOT_FILES[filename]
    return download_verified(url, Path(root) / filename, md5)

"""Omniglot (Lake et al. 2015): 1623 handwritten characters from 50 alphabets, 20 drawings each.

Run ``python -m metarl.supervised.data --root ../shared/data/omniglot`` to decode both zips into the cache
once and print the split sizes.
"""

from __future__ import annotations

import argparse
import os
import re
import time
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metarl.errors import MissingFileError, UserError
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.cache import cached, file_sha256, fingerprint, resolve_cache_dir
from metarl.supervised.data.download import OMNIGLOT_FILES, download_omniglot_file
from metarl.supervised.data.imaging import check_image_size, check_resample, decode_image, open_zip
from metarl.supervised.data.omniglot_splits import VINYALS_SOURCES, finn_characters, vinyals_characters

OMNIGLOT_PARTS = {"background": "images_background.zip", "evaluation": "images_evaluation.zip"}
LAKE_SPLITS = {
    "background": "background",
    "evaluation": "evaluation",
    "train": "background",
    "test": "evaluation",
}
VALID_ROTATIONS = (0, 90, 180, 270)
_LAYOUT = "<top>/<Alphabet>/characterNN/<id>_<drawer>.png"


def _natural_key(text: str) -> list:
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", text)]


def _check_rotations(rotations: Sequence[int]) -> tuple[int, ...]:
    values = tuple(rotations)
    if (
        not values
        or any(isinstance(r, bool) or r not in VALID_ROTATIONS for r in values)
        or len(set(values)) != len(values)
    ):
        raise UserError(f"rotations must be distinct values among {VALID_ROTATIONS}, got {values!r}")
    return tuple(int(r) for r in values)


def decode_omniglot_zip(zip_path: Path, image_size: int, resample: str) -> tuple[np.ndarray, dict]:
    """Decode every drawing of an official Omniglot zip (no extraction to disk).

    Returns:
        ``images`` ``(num_drawings, image_size, image_size)`` uint8 with ink = 255 and background = 0, grouped by
        character (sorted by alphabet, then character number, then file name), and metadata
        ``{"characters": ["Alphabet/characterNN", ...], "offsets": [...]}`` (``len(characters) + 1`` offsets).
    """
    top = zip_path.stem
    fix = f"use the official {zip_path.name}, or pass download=True to fetch it"
    with open_zip(zip_path, fix) as archive:
        drawings: dict[str, list[str]] = {}
        for name in archive.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[0] == top and parts[3].lower().endswith(".png"):
                drawings.setdefault(f"{parts[1]}/{parts[2]}", []).append(name)
        if not drawings:
            sample = archive.namelist()[:3]
            raise UserError(
                f"{zip_path} holds no drawings in the official layout {_LAYOUT.replace('<top>', top)} "
                f"(first entries: {sample}); {fix}"
            )
        characters = sorted(drawings, key=_natural_key)
        members = [member for character in characters for member in sorted(drawings[character])]
        images = np.empty((len(members), image_size, image_size), dtype=np.uint8)
        for i, member in enumerate(members):
            try:
                data = archive.read(member)
            except (zipfile.BadZipFile, zlib.error, OSError) as err:
                raise UserError(f"{zip_path} is damaged: cannot read {member} ({err}); {fix}") from err
            # Omniglot PNGs are white paper (1) with black ink (0); store ink as 255 so that ink = 1.0 in episodes.
            images[i] = 255 - decode_image(data, image_size, "L", resample, what=f"{member} in {zip_path}")
    offsets = np.concatenate([[0], np.cumsum([len(drawings[c]) for c in characters])]).tolist()
    return images, {"characters": characters, "offsets": offsets}


def load_omniglot_part(
    root: Path, part: str, image_size: int, resample: str, download: bool, cache_dir: Path
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Decoded drawings of one official zip (``part`` = "background" or "evaluation"), from the cache if possible.

    Returns:
        ``(images, characters, offsets)`` as described in :func:`decode_omniglot_zip`.
    """
    filename = OMNIGLOT_PARTS[part]
    zip_path = root / filename
    if not zip_path.is_file():
        if download:
            download_omniglot_file(root, filename)
        else:
            nested = next((p for p in sorted(root.glob(f"*/{filename}"))), None)
            hint = f" (found {nested}: did you mean root={nested.parent}?)" if nested else ""
            raise MissingFileError(
                f"{zip_path} not found{hint}: Omniglot needs the official {filename} "
                f"({OMNIGLOT_FILES[filename][0]}). Pass download=True, or point root at a folder that holds {filename}."
            )
    key = fingerprint([file_sha256(zip_path), image_size, resample])
    name = f"omniglot-{part}-{image_size}px-{resample}-{key}"
    images, meta = cached(cache_dir, name, lambda: decode_omniglot_zip(zip_path, image_size, resample))
    return images, meta["characters"], np.asarray(meta["offsets"], dtype=np.int64)


class Omniglot(ClassIndexedDataset):
    """Omniglot characters as classes, each rotation of a character a class of its own.

    Reads the official ``images_background.zip`` / ``images_evaluation.zip`` from ``root`` (layout
    ``images_background/<Alphabet>/characterNN/<id>_<drawer>.png``) without extracting them. Each zip is decoded
    once into a uint8 cache entry in ``cache_dir`` (keyed by the zip's sha256, image size and filter), so later
    loads skip PNG decoding; rotated copies are made with ``np.rot90`` (counter-clockwise, as PIL's
    ``Image.rotate``) when the split's array is built. Pixels: 1.0 = ink, 0.0 = background (inverted PNGs).

    Resizing: each 105x105 1-bit drawing is converted to grayscale and resized with ``resample`` (default
    ``"lanczos"``, an antialiased downsampling). The reference pipelines (ProtoNet's ``omniglot.py``: default
    filter; MAML's ``resize_images.py``: LANCZOS) call ``resize`` on the 1-bit image, which Pillow (checked with
    13.0) does with nearest-neighbour whatever filter is asked for, so their inputs are binary; pass
    ``resample="nearest"`` to reproduce that. (ProtoNet also transposes each image; that is not reproduced.)
    Rotating after resizing equals resizing after rotating for multiples of 90 degrees on square images.

    Splits:
        - ``split_scheme="vinyals"`` (Vinyals et al. 2016, as used by Prototypical Networks): ``split`` in
          "train" / "val" / "test" / "trainval" = 1028 / 172 / 423 / 1200 characters, times ``len(rotations)``
          classes (4112 / 688 / 1692 / 4800 with the default four rotations). Class order follows the reference
          split files (``Alphabet/characterNN/rot000`` ...).
        - ``split_scheme="lake"`` (Lake et al. 2015): ``split`` "background" (or "train") = 964 characters of 30
          alphabets, "evaluation" (or "test") = 659 characters of 20 alphabets.
        - ``split_scheme="finn"`` (the code of Finn et al. 2017, and learn2learn's): all characters shuffled with a
          fixed seed irrespective of alphabet; "train" / "val" / "test" / "trainval" = 1100 / 100 / 423 / 1200
          characters. Test alphabets are seen in training, which makes it easier than the other two.

    Args:
        root: folder holding the zips (e.g. ``../shared/data/omniglot``); created by ``download=True``.
        split: part of the split scheme (see above).
        split_scheme: "vinyals", "lake" or "finn".
        image_size: side of the square images (28 in most papers, 105 for the originals).
        rotations: rotations in degrees (subset of 0, 90, 180, 270), each a separate class.
        resample: "lanczos", "bilinear", "bicubic" or "nearest".
        download: fetch the official zips into ``root`` when they are missing and check their md5.
        cache_dir: where decoded arrays are cached (default ``$METARL_CACHE`` or ``~/.cache/metarl``).

    Raises:
        FileNotFoundError: if ``root`` or a zip is missing and ``download`` is False.
        ValueError: for an unknown split, a bad option, a damaged zip or one in another layout.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        split_scheme: str = "vinyals",
        image_size: int = 28,
        rotations: Sequence[int] = VALID_ROTATIONS,
        resample: str = "lanczos",
        download: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.root = Path(root).expanduser()
        self.image_size = check_image_size(image_size)
        self.resample = check_resample(resample)
        self.rotations = _check_rotations(rotations)
        if split_scheme == "vinyals":
            if split in ("background", "evaluation"):
                raise UserError(f"split {split!r} belongs to split_scheme='lake'; pass split_scheme='lake'")
            characters = vinyals_characters(split)
            parts = VINYALS_SOURCES[split]
        elif split_scheme == "lake":
            if split not in LAKE_SPLITS:
                raise UserError(
                    f"unknown split {split!r} for split_scheme='lake'; choose one of {sorted(LAKE_SPLITS)}"
                )
            parts, characters = (LAKE_SPLITS[split],), None
        elif split_scheme == "finn":
            parts, characters = ("background", "evaluation"), None
        else:
            raise UserError(f"unknown split_scheme {split_scheme!r}; choose 'vinyals', 'lake' or 'finn'")
        if not self.root.is_dir() and not download:
            raise MissingFileError(
                f"Omniglot root {self.root} is not a folder: point root at a folder with images_background.zip and "
                f"images_evaluation.zip (e.g. ../shared/data/omniglot), or pass download=True"
            )
        self.split, self.split_scheme = split, split_scheme
        cache = resolve_cache_dir(cache_dir)
        located: dict[str, tuple[np.ndarray, int, int]] = {}
        for part in parts:
            images, part_characters, offsets = load_omniglot_part(
                self.root, part, self.image_size, self.resample, download, cache
            )
            for i, character in enumerate(part_characters):
                located[character] = (images, int(offsets[i]), int(offsets[i + 1]))
        if split_scheme == "lake":
            characters = list(located)  # the one part's characters, in the zip's order
        elif split_scheme == "finn":
            characters = finn_characters(split, list(located))
        missing = [c for c in characters if c not in located]
        if missing:
            raise UserError(
                f"{len(missing)} characters of the {split_scheme} {split!r} split are missing from "
                f"{', '.join(OMNIGLOT_PARTS[p] for p in parts)} in {self.root} (e.g. {missing[:3]}); "
                f"the zips are incomplete: use the official files (download=True)"
            )
        self.characters: list[str] = list(characters)
        chunks, sizes, names = [], [], []
        for character in self.characters:
            images, start, stop = located[character]
            for rotation in self.rotations:
                chunks.append(np.rot90(images[start:stop], k=rotation // 90, axes=(1, 2)))
                sizes.append(stop - start)
                names.append(f"{character}/rot{rotation:03d}")
        stacked = np.concatenate(chunks)[:, None]
        super().__init__(stacked, np.concatenate([[0], np.cumsum(sizes)]), names)

    @property
    def class_alphabets(self) -> list[str]:
        """The alphabet of each class (classes are named ``Alphabet/characterNN/rotNNN``)."""
        return [name.split("/")[0] for name in self.class_names]


def main(argv: Sequence[str] | None = None) -> None:
    """Decode (or load from the cache) every split and print its size."""
    parser = argparse.ArgumentParser(description="Warm the Omniglot cache and print the split sizes.")
    parser.add_argument(
        "--root", required=True, help="folder with images_background.zip and images_evaluation.zip"
    )
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--resample", default="lanczos")
    parser.add_argument("--cache-dir", default=None, help="default: $METARL_CACHE or ~/.cache/metarl")
    parser.add_argument("--download", action="store_true", help="fetch the official zips when missing")
    args = parser.parse_args(argv)
    splits = [("vinyals", s) for s in ("train", "val", "test")] + [
        ("lake", s) for s in ("background", "evaluation")
    ]
    for scheme, split in splits:
        start = time.perf_counter()
        dataset = Omniglot(
            args.root,
            split,
            split_scheme=scheme,
            image_size=args.image_size,
            resample=args.resample,
            download=args.download,
            cache_dir=args.cache_dir,
        )
        print(
            f"{scheme:8s} {split:10s} {len(dataset.characters):5d} characters {dataset.num_classes:5d} classes "
            f"{len(dataset):6d} images {dataset.image_shape} ({time.perf_counter() - start:.1f} s)"
        )


if __name__ == "__main__":
    main()

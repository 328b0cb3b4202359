"""The ORL face database (AT&T "Database of Faces"), credit: Olivetti Research Laboratory, Cambridge, UK.

Layout: ``root/s<subject>/<image>.pgm``, 10 grayscale 92x112 (width x height) images per subject, taken between
1992 and 1994 with varying lighting, expression and glasses (F. Samaria and A. Harter, "Parameterisation of a
stochastic model for human face identification", 2nd IEEE Workshop on Applications of Computer Vision, 1994).
Each subject is a class, so few-shot episodes are N-way face identification among people never seen in training.

Subject split (fixed by subject number, so every run and every paper table sees the same people): subjects
1-24 train, 25-28 validation, 29 and above test (29-38 on the 38-subject copy in ``../shared/data/orl_faces``,
29-40 on the original 40). ``trainval`` is 1-28. The numbers, not a shuffle, define the split: the subjects are
in no particular order in the database, and a fixed list is what other papers can quote.

Images are centre-cropped to a square (the middle 92 rows of 112: the face sits in the middle, the crop drops
background above the hair and below the chin) and resized to ``image_size`` (default 28: the resolution every
other few-shot learner and the Koch twin here are built for, 1/11 of the pixels of 92x92, and enough to tell
40 faces apart: eigenface and HMM results on ORL used images of that order).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from metarl.errors import MissingFileError, UserError
from metarl.supervised.data.base import ClassIndexedDataset
from metarl.supervised.data.imaging import RESAMPLE_FILTERS, check_image_size, check_resample

SPLITS: dict[str, tuple[int, int | None]] = {
    "train": (1, 24),
    "val": (25, 28),
    "trainval": (1, 28),
    "test": (29, None),
    "all": (1, None),
}
"""Subject numbers of each split, inclusive (``None``: up to the last subject present)."""

_SUBJECT = re.compile(r"^s(\d+)$")


def decode_face(path: str | os.PathLike, image_size: int, resample: str) -> np.ndarray:
    """One face: grayscale, centre-cropped to a square, resized to ``image_size``; ``(H, W)`` uint8."""
    try:
        with Image.open(path) as image:
            image = image.convert("L")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            if side != image_size:
                image = image.resize((image_size, image_size), RESAMPLE_FILTERS[resample])
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"cannot decode {path}: {err}; replace the file with a valid PGM image") from err


class ORLFaces(ClassIndexedDataset):
    """The ORL faces of one subject split, one class per subject (see the module docstring for the split).

    Args:
        root: the folder holding ``s1/ ... s40/``.
        split: "train", "val", "trainval", "test" or "all".
        image_size: side of the square images.
        resample: resize filter ("lanczos", "bilinear", "bicubic", "nearest").

    Raises:
        MissingFileError: ``root`` holds no ``s<number>`` folders.
        UserError: unknown split, a split without subjects, or an unreadable image.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", image_size: int = 28, resample: str = "lanczos"
    ):
        if split not in SPLITS:
            raise UserError(f"unknown ORL faces split {split!r}; choose one of {sorted(SPLITS)}")
        self.root = Path(root).expanduser()
        self.image_size = check_image_size(image_size)
        check_resample(resample)
        subjects = sorted(
            (int(match.group(1)), p)
            for p in (self.root.iterdir() if self.root.is_dir() else [])
            if p.is_dir() and (match := _SUBJECT.match(p.name))
        )
        if not subjects:
            raise MissingFileError(
                f"no ORL faces at {self.root}: expected folders s1/ ... s40/ of .pgm images (data.root=DIR)"
            )
        first, last = SPLITS[split]
        chosen = [(n, p) for n, p in subjects if n >= first and (last is None or n <= last)]
        if not chosen:
            raise UserError(
                f"the ORL faces at {self.root} have no subjects for split {split!r} (subjects "
                f"{first}..{last or 'end'}; found {subjects[0][0]}..{subjects[-1][0]})"
            )
        files, sizes, names = [], [], []
        for number, folder in chosen:
            images = sorted(folder.glob("*.pgm"), key=lambda p: (len(p.stem), p.stem))
            if not images:
                raise UserError(f"{folder} holds no .pgm images; every subject folder needs its faces")
            files.extend(images)
            sizes.append(len(images))
            names.append(f"s{number}")
        pixels = np.stack([decode_face(f, self.image_size, resample) for f in files])[:, None]
        super().__init__(pixels, np.concatenate([[0], np.cumsum(sizes)]), names)
        self.files = files

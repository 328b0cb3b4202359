"""Lake et al.'s 20 within-alphabet 20-way one-shot classification runs on Omniglot (``all_runs.zip``)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metarl.errors import UserError
from metarl.supervised.data.base import to_float_tensor
from metarl.supervised.data.download import LAKE_RUNS_URL
from metarl.supervised.data.episodes import EpisodeBatch
from metarl.supervised.data.imaging import check_image_size, check_resample, decode_image, open_zip

_RUN_DIR = re.compile(r"^(run\d+)/class_labels\.txt$")


@dataclass(frozen=True)
class OneShotRun:
    """One 20-way one-shot run: one training drawing per class and test drawings to classify.

    Attributes:
        name: the run's folder, e.g. ``"run01"``.
        training_images: ``(ways, 1, S, S)`` uint8 (ink = 255); image ``i`` is ``training/class{i+1:02d}.png``.
        test_images: ``(ways, 1, S, S)`` uint8, in ``test/itemNN.png`` order.
        test_labels: ``(ways,)`` int64: the index of the training image of the same character (answer key).
    """

    name: str
    training_images: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class LakeOneShotRuns:
    """The 20 one-shot runs of Lake et al. (2015), the protocol of Koch et al. (2015) (92.0% for Siamese nets).

    Each run holds 20 characters from one evaluation alphabet: 20 training drawings (one per character) and 20
    test drawings by other drawers; a method is scored by the fraction of test drawings matched to the right
    training drawing, averaged over the 400 trials. The runs are read from ``root/all_runs.zip`` (layout
    ``runNN/{training,test}/*.png`` + ``runNN/class_labels.txt``, lines ``runNN/test/itemMM.png
    runNN/training/classKK.png``) and decoded once, at construction (800 small PNGs), the same way as
    :class:`~metarl.supervised.data.omniglot.Omniglot`: grayscale, resized with ``resample``, inverted so
    ink = 1.0 in episodes.

    Args:
        root: folder holding ``all_runs.zip`` (from Lake's repository, ``python/one-shot-classification``).
        image_size: side of the square images (use the same as the training data; 105 keeps the originals).
        resample: "lanczos", "bilinear", "bicubic" or "nearest".

    Raises:
        FileNotFoundError: if ``all_runs.zip`` is missing.
        ValueError: if it is damaged or not in the layout above.
    """

    def __init__(self, root: str | os.PathLike, *, image_size: int = 28, resample: str = "lanczos"):
        self.root = Path(root).expanduser()
        self.image_size = check_image_size(image_size)
        self.resample = check_resample(resample)
        zip_path = self.root / "all_runs.zip"
        fix = f"point root at a folder with Lake's all_runs.zip (download it from {LAKE_RUNS_URL})"
        self.runs: list[OneShotRun] = []
        with open_zip(zip_path, fix) as archive:
            names = set(archive.namelist())
            run_names = sorted(m.group(1) for m in map(_RUN_DIR.match, names) if m)
            if not run_names:
                raise UserError(f"{zip_path} holds no runNN/class_labels.txt; {fix}")

            def read_image(member: str) -> np.ndarray:
                if member not in names:
                    raise UserError(f"{zip_path} lacks {member}, named in its answer key; {fix}")
                pixels = decode_image(archive.read(member), self.image_size, "L", resample, what=member)
                return (255 - pixels)[None]

            for run in run_names:
                answers = [
                    line.split() for line in archive.read(f"{run}/class_labels.txt").decode().splitlines()
                ]
                answers = [pair for pair in answers if pair]
                training = sorted(pair[1] for pair in answers)
                if any(len(pair) != 2 for pair in answers) or len(set(training)) != len(answers):
                    raise UserError(
                        f"{zip_path}: {run}/class_labels.txt must pair each test item with a distinct training "
                        f"class, one 'test/itemNN.png training/classNN.png' pair per line; {fix}"
                    )
                index = {member: i for i, member in enumerate(training)}
                self.runs.append(
                    OneShotRun(
                        name=run,
                        training_images=np.stack([read_image(member) for member in training]),
                        test_images=np.stack([read_image(test) for test, _ in answers]),
                        test_labels=np.array([index[train] for _, train in answers], dtype=np.int64),
                    )
                )

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, i: int) -> OneShotRun:
        return self.runs[i]

    def __iter__(self) -> Iterator[OneShotRun]:
        return iter(self.runs)

    def episodes(self) -> EpisodeBatch:
        """All runs as one batch of 20-way 1-shot 1-query tasks (one task per run).

        The support set is the training drawings (label = class index); the query set is the test drawings
        ordered by their label, so the layout matches :class:`~metarl.supervised.data.sampler.EpisodeSampler`
        (``query_y[t] = [0, 1, ..., 19]``). Accuracy over this batch is the protocol's score.
        """
        ways = {len(run.test_labels) for run in self.runs}
        if len(ways) != 1:
            raise UserError(f"runs have different numbers of classes {sorted(ways)}; use them one at a time")
        (num_ways,) = ways
        support = np.stack([run.training_images for run in self.runs])
        query = np.stack([run.test_images[np.argsort(run.test_labels)] for run in self.runs])
        labels = torch.arange(num_ways).expand(len(self.runs), -1).contiguous()
        return EpisodeBatch(
            to_float_tensor(support), labels, to_float_tensor(query), labels.clone(), num_ways, 1, 1
        )

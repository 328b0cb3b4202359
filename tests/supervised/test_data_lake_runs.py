"""Lake's one-shot runs: answer key, episode layout, errors; the real all_runs.zip when present."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.supervised.data import LakeOneShotRuns

ANSWERS = {"run01": [3, 1, 2], "run02": [2, 3, 1]}  # test item i matches training class ANSWERS[run][i]


def glyph(run: int, character: int, variant: int) -> bytes:
    """A 105x105 1-bit PNG: a black block placed by (run, character); variant shifts it a little."""
    paper = np.ones((105, 105), dtype=bool)
    top, left = 10 + 25 * character + variant, 10 + 30 * run + variant
    paper[top : top + 15, left : left + 15] = False
    buffer = io.BytesIO()
    Image.fromarray(paper).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "omniglot"
    root.mkdir()
    with zipfile.ZipFile(root / "all_runs.zip", "w") as archive:
        for r, (run, answers) in enumerate(ANSWERS.items()):
            lines = []
            for item, label in enumerate(answers, start=1):
                archive.writestr(f"{run}/training/class{item:02d}.png", glyph(r, item, 0))
                archive.writestr(f"{run}/test/item{item:02d}.png", glyph(r, label, 2))
                lines.append(f"{run}/test/item{item:02d}.png {run}/training/class{label:02d}.png")
            archive.writestr(f"{run}/class_labels.txt", "\r\n".join(lines) + "\r\n")
    return root


def test_answer_key_and_images(runs_root):
    runs = LakeOneShotRuns(runs_root, image_size=105)
    assert len(runs) == 2 and [run.name for run in runs] == ["run01", "run02"]
    run = runs[1]
    assert run.training_images.shape == (3, 1, 105, 105) and run.training_images.dtype == np.uint8
    assert run.test_labels.tolist() == [a - 1 for a in ANSWERS["run02"]]
    expected = np.where(np.asarray(Image.open(io.BytesIO(glyph(1, 2, 0)))), 0, 255)
    assert np.array_equal(run.training_images[1, 0], expected), (
        "training image i is class{i+1}.png, ink = 255"
    )


def test_episodes_pair_each_query_with_its_support_class(runs_root):
    batch = LakeOneShotRuns(runs_root, image_size=28).episodes()
    assert batch.support_x.shape == (2, 3, 1, 28, 28) and batch.query_x.shape == (2, 3, 1, 28, 28)
    assert (batch.ways, batch.shots, batch.queries) == (3, 1, 1)
    assert torch.equal(batch.query_y, torch.arange(3).expand(2, -1))
    # The nearest support image (pixel distance) of every query is the support of the same label.
    distances = torch.cdist(batch.query_x.flatten(2), batch.support_x.flatten(2))
    assert torch.equal(distances.argmin(-1), batch.query_y)


def test_missing_or_corrupt_zip(tmp_path, runs_root):
    with pytest.raises(FileNotFoundError, match="all_runs.zip not found.*one-shot-classification"):
        LakeOneShotRuns(tmp_path)
    (tmp_path / "all_runs.zip").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable zip archive"):
        LakeOneShotRuns(tmp_path)
    with zipfile.ZipFile(runs_root / "all_runs.zip", "a") as archive:
        archive.writestr("run03/class_labels.txt", "run03/test/item01.png run03/training/class01.png\n")
    with pytest.raises(ValueError, match="lacks run03/"):
        LakeOneShotRuns(runs_root)


def test_real_runs(shared_data):
    runs = LakeOneShotRuns(shared_data / "omniglot")
    assert len(runs) == 20
    for run in runs:
        assert run.training_images.shape == (20, 1, 28, 28) and run.test_images.shape == (20, 1, 28, 28)
        assert sorted(run.test_labels.tolist()) == list(range(20))
    batch = runs.episodes()
    assert batch.support_x.shape == (20, 20, 1, 28, 28) and batch.query_y.shape == (20, 20)
    # Ink is sparse and bright: strokes cover a minority of pixels.
    assert 0.03 < float(batch.support_x.mean()) < 0.3
    # Nearest neighbour on raw pixels beats chance (5%) clearly only if the answer key is aligned.
    distances = torch.cdist(batch.query_x.flatten(2), batch.support_x.flatten(2))
    accuracy = float((distances.argmin(-1) == batch.query_y).float().mean())
    assert accuracy > 0.15, accuracy

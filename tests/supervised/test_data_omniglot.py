"""Omniglot loader on synthetic zips in the official layout: classes, rotations, pixels, cache and errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metarl.supervised.data import EpisodeSampler, Omniglot, imaging

BACKGROUND = {"Alpha": 3, "Beta_(Test)": 2}  # alphabet -> characters
EVALUATION = {"Gamma": 2}
DRAWINGS = 4


def drawing(alphabet_index: int, character: int, drawer: int) -> np.ndarray:
    """A 105x105 boolean image (True = white paper) with a black block whose place identifies the drawing."""
    paper = np.ones((105, 105), dtype=bool)
    top, left = 5 + 20 * drawer, 5 + 30 * character + 5 * alphabet_index
    paper[top : top + 12, left : left + 20] = False
    paper[top : top + 40, left : left + 4] = False  # an L shape, so rotations are distinguishable
    return paper


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def write_zip(path: Path, top: str, alphabets: dict[str, int], offset: int = 0) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for a, (alphabet, characters) in enumerate(alphabets.items()):
            for c in range(1, characters + 1):
                for d in range(1, DRAWINGS + 1):
                    name = f"{top}/{alphabet}/character{c:02d}/{(a + offset) * 100 + c:04d}_{d:02d}.png"
                    archive.writestr(name, png_bytes(drawing(a + offset, c, d)))


@pytest.fixture
def omniglot_root(tmp_path: Path) -> Path:
    root = tmp_path / "omniglot"
    root.mkdir()
    write_zip(root / "images_background.zip", "images_background", BACKGROUND)
    write_zip(root / "images_evaluation.zip", "images_evaluation", EVALUATION, offset=len(BACKGROUND))
    return root


def test_lake_split_classes_rotations_and_pixels(omniglot_root, tmp_path):
    cache = tmp_path / "cache"
    background = Omniglot(omniglot_root, "background", split_scheme="lake", image_size=105, cache_dir=cache)
    assert background.characters == [
        "Alpha/character01",
        "Alpha/character02",
        "Alpha/character03",
        "Beta_(Test)/character01",
        "Beta_(Test)/character02",
    ]
    assert background.num_classes == 5 * 4 and len(background) == 5 * 4 * DRAWINGS
    assert background.class_names[:5] == [
        "Alpha/character01/rot000",
        "Alpha/character01/rot090",
        "Alpha/character01/rot180",
        "Alpha/character01/rot270",
        "Alpha/character02/rot000",
    ]
    assert background.image_shape == (1, 105, 105) and (background.class_sizes == DRAWINGS).all()
    # At full size nothing is resampled: ink (black) is exactly 255 and paper 0, drawings in file order.
    for d in range(DRAWINGS):
        expected = np.where(drawing(0, 2, d + 1), 0, 255).astype(np.uint8)
        assert np.array_equal(background.class_images(4)[d, 0], expected)
    # Rotation classes are the unrotated drawings turned counter-clockwise, as PIL's Image.rotate.
    upright = background.class_images(4)[:, 0]
    for k in (1, 2, 3):
        assert np.array_equal(background.class_images(4 + k)[:, 0], np.rot90(upright, k, axes=(1, 2)))
    pil_rotated = np.asarray(Image.fromarray(upright[0]).rotate(90))
    assert np.array_equal(background.class_images(5)[0, 0], pil_rotated)
    evaluation = Omniglot(
        omniglot_root, "test", split_scheme="lake", image_size=105, rotations=(0,), cache_dir=cache
    )
    assert evaluation.class_names == ["Gamma/character01/rot000", "Gamma/character02/rot000"]


def test_resized_images_match_a_direct_pil_resize(omniglot_root, tmp_path):
    dataset = Omniglot(
        omniglot_root, "background", split_scheme="lake", rotations=(0,), cache_dir=tmp_path / "c"
    )
    assert dataset.image_shape == (1, 28, 28)
    original = Image.fromarray(drawing(1, 1, 3)).convert("1").convert("L")
    expected = 255 - np.asarray(original.resize((28, 28), Image.Resampling.LANCZOS))
    assert np.array_equal(dataset.class_images(3)[2, 0], expected)
    assert len(np.unique(dataset.images)) > 2, "LANCZOS on grayscale gives antialiased edges"
    nearest = Omniglot(
        omniglot_root,
        "background",
        split_scheme="lake",
        rotations=(0,),
        resample="nearest",
        cache_dir=tmp_path / "c",
    )
    assert set(np.unique(nearest.images).tolist()) == {0, 255}
    # "nearest" reproduces the reference pipelines, which resize the 1-bit image itself.
    one_bit = Image.fromarray(drawing(0, 2, 4)).convert("1").resize((28, 28), Image.Resampling.LANCZOS)
    assert np.array_equal(nearest.class_images(1)[3, 0], 255 - np.asarray(one_bit.convert("L")))


def test_second_load_reads_the_cache_without_decoding_pngs(omniglot_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = Omniglot(omniglot_root, "background", split_scheme="lake", cache_dir=cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and entries[0].endswith(".json") and entries[1].endswith(".npy")
    assert not list(cache.glob("*.tmp"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("a PNG was decoded although the cache holds the images")

    monkeypatch.setattr(imaging.Image, "open", no_decoding)
    second = Omniglot(omniglot_root, "background", split_scheme="lake", cache_dir=cache)
    assert np.array_equal(first.images, second.images) and first.class_names == second.class_names
    # Another image size, or a changed zip, is a different cache entry and needs decoding.
    with pytest.raises(AssertionError, match="PNG was decoded"):
        Omniglot(omniglot_root, "background", split_scheme="lake", image_size=14, cache_dir=cache)
    write_zip(omniglot_root / "images_background.zip", "images_background", {"Alpha": 1})
    with pytest.raises(AssertionError, match="PNG was decoded"):
        Omniglot(omniglot_root, "background", split_scheme="lake", cache_dir=cache)


def test_damaged_cache_entry_is_rebuilt(omniglot_root, tmp_path):
    cache = tmp_path / "cache"
    first = Omniglot(omniglot_root, "evaluation", split_scheme="lake", cache_dir=cache)
    (npy,) = cache.glob("*.npy")
    npy.write_bytes(b"not an array")
    with pytest.warns(UserWarning, match="damaged cache entry"):
        second = Omniglot(omniglot_root, "evaluation", split_scheme="lake", cache_dir=cache)
    assert np.array_equal(first.images, second.images)


def test_sampler_on_omniglot(omniglot_root, tmp_path):
    dataset = Omniglot(omniglot_root, "background", split_scheme="lake", cache_dir=tmp_path / "c")
    batch = EpisodeSampler(dataset, ways=5, shots=1, queries=3, tasks_per_batch=2, seed=0).sample()
    assert batch.support_x.shape == (2, 5, 1, 28, 28) and batch.query_x.shape == (2, 15, 1, 28, 28)
    assert float(batch.support_x.min()) >= 0.0 and float(batch.support_x.max()) == 1.0


def test_missing_root_or_zip_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        Omniglot(tmp_path / "nowhere", cache_dir=tmp_path / "c")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="images_background.zip.*download=True"):
        Omniglot(tmp_path / "empty", "val", cache_dir=tmp_path / "c")
    (tmp_path / "empty" / "omniglot").mkdir()
    (tmp_path / "empty" / "omniglot" / "images_background.zip").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"did you mean root=.*empty/omniglot\?"):
        Omniglot(tmp_path / "empty", "val", cache_dir=tmp_path / "c")


def test_corrupt_zip_gives_a_clear_error(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "images_evaluation.zip").write_bytes(b"this is not a zip file" * 100)
    with pytest.raises(
        ValueError, match="images_evaluation.zip is not a readable zip archive.*download=True"
    ):
        Omniglot(root, "test", cache_dir=tmp_path / "c")


def test_damaged_member_gives_a_clear_error(omniglot_root, tmp_path):
    path = omniglot_root / "images_evaluation.zip"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 20 : start + 40] = bytes(20)  # overwrite compressed bytes: the CRC check fails
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged|cannot decode"):
        Omniglot(omniglot_root, "evaluation", split_scheme="lake", cache_dir=tmp_path / "c")


def test_wrong_layout_names_the_expected_layout(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with zipfile.ZipFile(root / "images_background.zip", "w") as archive:
        archive.writestr("somewhere/else/0001_01.png", png_bytes(drawing(0, 1, 1)))
    with pytest.raises(ValueError, match=r"official layout images_background/<Alphabet>/characterNN"):
        Omniglot(root, "background", split_scheme="lake", cache_dir=tmp_path / "c")


def test_vinyals_split_on_incomplete_zips_names_missing_characters(omniglot_root, tmp_path):
    with pytest.raises(
        ValueError, match="characters of the vinyals 'val' split are missing.*Hebrew/character01"
    ):
        Omniglot(omniglot_root, "val", cache_dir=tmp_path / "c")


def test_bad_options_raise_value_errors(omniglot_root, tmp_path):
    cache = tmp_path / "c"
    with pytest.raises(ValueError, match="unknown Vinyals split 'validation'"):
        Omniglot(omniglot_root, "validation", cache_dir=cache)
    with pytest.raises(ValueError, match="split_scheme"):
        Omniglot(omniglot_root, "train", split_scheme="snell", cache_dir=cache)
    with pytest.raises(ValueError, match="pass split_scheme='lake'"):
        Omniglot(omniglot_root, "background", cache_dir=cache)
    with pytest.raises(ValueError, match="unknown split 'background' for split_scheme='finn'"):
        Omniglot(omniglot_root, "background", split_scheme="finn", cache_dir=cache)
    with pytest.raises(ValueError, match="needs all 1623 Omniglot characters, found 7"):
        Omniglot(omniglot_root, "train", split_scheme="finn", cache_dir=cache)
    with pytest.raises(ValueError, match="rotations"):
        Omniglot(omniglot_root, "background", split_scheme="lake", rotations=(90, 90), cache_dir=cache)
    with pytest.raises(ValueError, match="rotations"):
        Omniglot(omniglot_root, "background", split_scheme="lake", rotations=(0, 45), cache_dir=cache)
    with pytest.raises(ValueError, match="image_size"):
        Omniglot(omniglot_root, "background", split_scheme="lake", image_size=0, cache_dir=cache)
    with pytest.raises(ValueError, match="resample"):
        Omniglot(omniglot_root, "background", split_scheme="lake", resample="cubic", cache_dir=cache)


def test_config_rotations_reach_the_loader(omniglot_root, tmp_path):
    from metarl.supervised.config import FewShotConfig, build_dataset
    from metarl.training import load_config

    base = ["data.split_scheme=lake", f"data.root={omniglot_root}", f"data.cache_dir={tmp_path / 'c'}"]
    config = load_config(FewShotConfig, None, [*base, "data.rotations=[0]"])
    assert build_dataset(config.data, "background").num_classes == 5
    assert build_dataset(load_config(FewShotConfig, None, base).data, "background").num_classes == 5 * 4
    with pytest.raises(ValueError, match="rotations"):
        build_dataset(load_config(FewShotConfig, None, [*base, "data.rotations=[45]"]).data, "background")

"""Reference configs are package data: ``--config`` takes a path or a shipped name; datasets default to
``$METARL_DATA/<dataset>`` else the user cache, and a missing one says to pass ``--data-root``."""

from __future__ import annotations

from pathlib import Path

import pytest

from metarl.agents.commands import find_config, resolve_config
from metarl.cli import parse_args
from metarl.errors import MissingFileError
from metarl.supervised.config import DataConfig, build_dataset, default_data_root
from metarl.training import config_file, shipped_config_dir, shipped_config_names, shipped_configs

ROOT = Path(__file__).resolve().parents[1]


def test_the_configs_live_inside_the_package():
    assert shipped_config_dir() == ROOT / "metarl" / "configs"
    assert not (ROOT / "configs").exists()
    assert {"maml-trpo/navigation2d", "reptile/bandit-k5", "fewshot/maml-sinusoid"} <= set(
        shipped_config_names()
    )
    assert [p.name for p in shipped_configs("reptile")][:2] == ["bandit-k10.yaml", "bandit-k5.yaml"]
    assert shipped_configs("no-such-group") == []


@pytest.mark.parametrize(
    "spec",
    [
        "maml-trpo/navigation2d-paper",
        "maml-trpo/navigation2d-paper.yaml",
        "configs/maml-trpo/navigation2d-paper.yaml",
    ],
)
def test_config_accepts_a_shipped_name(spec):
    assert config_file(spec) == shipped_config_dir() / "maml-trpo" / "navigation2d-paper.yaml"


def test_config_prefers_an_existing_file_and_explains_a_missing_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "maml-trpo").mkdir()
    (tmp_path / "maml-trpo" / "navigation2d.yaml").write_text("iterations: 3\n")
    assert config_file("maml-trpo/navigation2d.yaml") == Path("maml-trpo/navigation2d.yaml")
    with pytest.raises(
        MissingFileError,
        match="config file maml-trpo/navigaton2d not found, and no shipped config has that name.*did you mean maml-trpo/navigation2d",
    ):
        config_file("maml-trpo/navigaton2d")


def test_train_resolves_names_and_finds_the_reference_config():
    config, path = resolve_config(
        parse_args(["train", "--config", "maml-trpo/navigation2d-paper", "iterations=3"])
    )
    assert path == shipped_config_dir() / "maml-trpo" / "navigation2d-paper.yaml" and config.iterations == 3
    assert (
        find_config("reptile", "MetaRL/Bandit-K5-v0") == shipped_config_dir() / "reptile" / "bandit-k5.yaml"
    )


def test_data_root_defaults_to_metarl_data_else_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("METARL_DATA", str(tmp_path / "data"))
    assert default_data_root("omniglot") == str(tmp_path / "data" / "omniglot")
    monkeypatch.delenv("METARL_DATA")
    monkeypatch.setenv("METARL_CACHE", str(tmp_path / "cache"))
    assert default_data_root("omniglot") == str(tmp_path / "cache" / "data" / "omniglot")


def test_missing_data_at_the_default_location_points_at_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("METARL_DATA", str(tmp_path))
    message = rf"no omniglot data at the default location {tmp_path / 'omniglot'}: pass --data-root DIR"
    with pytest.raises(MissingFileError, match=message):
        build_dataset(DataConfig(dataset="omniglot"), "train")

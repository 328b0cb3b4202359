"""The documentation site: it builds with --strict, and what its pages name (config keys, shipped configs,
example files) exists."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from metarl.agents import TrainConfig
from metarl.supervised.config import FewShotConfig
from metarl.supervised.learners import LEARNERS
from metarl.training import shipped_config_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RL_PAGES = ("maml-trpo.md", "reptile-pg.md", "promp.md", "rl2.md", "pearl.md", "es-maml.md")


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's banner about its successor
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "WARNING -" not in result.stderr, result.stderr
    # the guides include their examples' code, the algorithm pages their modules' docstrings
    guide = (site / "guides" / "train-python" / "index.html").read_text()
    assert "# the shipped reference config (a YAML file inside the package)" in guide
    guide = (site / "custom-envs" / "index.html").read_text()
    assert "# tasks validate themselves" in guide and "# whole episodes: same seeds and actions" in guide
    assert "8&lt;--" not in guide  # the snippet markers stay out of the page
    assert "Finn, Abbeel, Levine 2017" in (site / "algorithms" / "maml-trpo" / "index.html").read_text()
    # the results page is generated from docs/results/data/, its plots next to it
    results = (site / "results" / "index.html").read_text()
    assert "sb3_ppo_navigation2d_eval.csv" in results and "MetaRL/TabularMDP-v0" in results
    assert (site / "results" / "generated" / "sb3_ppo_navigation2d_curve.png").stat().st_size > 1000
    # API reference from the docstrings, without reST roles
    api = (site / "reference" / "envs" / "index.html").read_text()
    assert "make_batched" in api and ":class:" not in api and ":func:" not in api


def _config_field(config: type, key: str) -> bool:
    """Whether ``key`` (``section.name``) is a field of the config dataclass ``config``."""
    for part in key.split("."):
        if not (dataclasses.is_dataclass(config) and part in {f.name for f in dataclasses.fields(config)}):
            return False
        config = typing.get_type_hints(config)[part]
    return True


def _learner_option(name: str) -> bool:
    for entry in LEARNERS.values():
        cls = getattr(importlib.import_module(entry.module), entry.class_name)
        if any(
            name in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c)
        ):
            return True
    return False


def _documented_keys(page: Path) -> list[str]:
    section = page.read_text().split("## Config keys that matter", 1)[1].split("\n## ", 1)[0]
    keys = []
    for bullet in re.findall(r"^- (.*?):", section, flags=re.MULTILINE):
        keys += re.findall(r"`([a-z_.]+)`", bullet)
    return keys


@pytest.mark.parametrize("page", sorted((DOCS / "algorithms").glob("*.md")), ids=lambda p: p.stem)
def test_algorithm_pages_name_real_config_keys(page):
    keys = _documented_keys(page)
    assert keys, f"{page.name} lists no config keys"
    config = TrainConfig if page.name in RL_PAGES else FewShotConfig
    for key in keys:
        if key.startswith("learner_options."):
            assert _learner_option(key.removeprefix("learner_options.")), key
        else:
            assert _config_field(config, key), key


def test_shipped_configs_named_in_the_docs_exist():
    shipped = set(shipped_config_names())
    pages = [*DOCS.rglob("*.md"), ROOT / "README.md"]
    named = {
        name
        for page in pages
        for name in re.findall(
            r"\b((?:maml-trpo|maml-ppo|promp|reptile|rl2|pearl|es-maml|openai-es|fewshot)/[a-z0-9-]+[a-z0-9])\b",
            page.read_text(),
        )
    }
    assert named and named <= shipped, sorted(named - shipped)


def test_included_snippets_and_linked_files_exist():
    pages = [*DOCS.rglob("*.md"), ROOT / "README.md"]
    for page in pages:
        text = page.read_text()
        for path in re.findall(r'--8<-- "([^":]+)', text):
            assert (ROOT / path).exists() or path.startswith("docs/results/generated/"), (page, path)
        if page.name == "README.md":
            for target in re.findall(r"\]\(([^)#]+)\)", text):
                assert (ROOT / target).exists(), target

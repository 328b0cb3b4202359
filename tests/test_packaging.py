"""The package works from a plain (non-editable) install: the wheel carries the reference configs, so
``metarl train`` run from any directory uses the shipped config, and the version is written once.

Builds the wheel from a copy of the source tree (offline, with the setuptools already installed) and
installs it without dependencies into a fresh virtual environment that borrows this environment's
packages (torch, gymnasium, ...) through a ``.pth`` file, so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
import yaml

import metarl
from metarl.agents import TrainConfig
from metarl.training import config_file, config_to_dict, load_config, shipped_config_names

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = shutil.ignore_patterns(".*", "runs", "build", "*.egg-info", "__pycache__", "tests", "docs")


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with only the built wheel of metarl installed; returns its ``bin`` folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SHIPPED)
    wheels = tmp / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels,
        source, cwd=tmp)  # fmt: skip
    (wheel,) = wheels.glob("metarl-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site_packages = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp).strip()
    )
    # the dependencies (not metarl: .pth files of that folder, such as an editable metarl's, are not processed)
    (site_packages / "dependencies.pth").write_text(str(Path(torch.__file__).parents[1]) + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel, cwd=tmp)
    return env_dir / "bin"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_train_from_the_wheel_uses_the_shipped_reference_config(installed, tmp_path):
    where = run(
        installed / "python", "-c", "import metarl; print(metarl.__file__)", cwd=tmp_path, env=clean_env()
    )
    assert Path(where.strip()).is_relative_to(installed.parent), "metarl must come from the wheel"
    out = run(
        installed / "metarl", "train", "--algo", "reptile", "--env", "MetaRL/Bandit-K5-v0", "iterations=1",
        "--run-dir", tmp_path / "run", "--no-progress", cwd=tmp_path, env=clean_env(),
    )  # fmt: skip
    shipped = Path(out.split("(config: ", 1)[1].split(")", 1)[0])
    assert shipped.is_relative_to(installed.parent) and shipped.as_posix().endswith(
        "configs/reptile/bandit-k5.yaml"
    )
    expected = load_config(TrainConfig, config_file("reptile/bandit-k5"), ["iterations=1"])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved == yaml.safe_load(yaml.safe_dump(config_to_dict(expected)))
    assert expected != TrainConfig(
        algo="reptile", env="MetaRL/Bandit-K5-v0", iterations=1
    )  # not the defaults


@pytest.mark.slow
def test_the_wheel_ships_every_config_and_the_version_is_written_once(installed, tmp_path):
    script = (
        "import importlib.metadata, metarl\n"
        "from metarl.training import shipped_config_names\n"
        "print(metarl.__version__, importlib.metadata.version('metarl'))\n"
        "print(' '.join(shipped_config_names()))\n"
    )
    versions, names = run(installed / "python", "-c", script, cwd=tmp_path, env=clean_env()).splitlines()
    assert versions.split() == [metarl.__version__, metarl.__version__]
    assert names.split() == shipped_config_names() and len(names.split()) > 30
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    extras = project["optional-dependencies"]
    # an extra is declared only for code that uses it, and dev (CI) installs it so that its tests run
    assert "import ray" in (ROOT / "metarl" / "agents" / "ray_sampler.py").read_text()
    assert any(req.startswith("ray") for req in extras["ray"]) and extras["ray"][0] in extras["dev"]
    assert (ROOT / "metarl" / "envs" / "metaworld").is_dir() and extras["metaworld"]


@pytest.mark.slow
def test_a_users_own_env_trains_and_evaluates_through_the_cli_of_the_wheel(installed, tmp_path):
    """The issue's user story: a task distribution written outside the repository, trained and evaluated with
    the installed command only, the evaluation in a new process that finds the env from the run's record."""
    (tmp_path / "mylab").mkdir()
    shutil.copy(ROOT / "examples" / "point_mass_ring.py", tmp_path / "mylab" / "point_mass_ring.py")
    run(
        installed / "metarl", "train", "--import", "mylab/point_mass_ring.py", "--env", "MyLab/PointMassRing-v0",
        "iterations=2", "meta_batch_size=3", "episodes_per_task=3", "--run-dir", "run", "--no-progress",
        cwd=tmp_path, env=clean_env(),
    )  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run(
        installed / "metarl", "evaluate", tmp_path / "run", "--tasks", "2", "--adapt-steps", "1", "--baselines",
        "random-init", "--no-progress", cwd=elsewhere, env=clean_env(),
    )  # fmt: skip
    assert "MyLab/PointMassRing-v0" in out and "random-init" in out
    assert (tmp_path / "run" / "eval.json").is_file()

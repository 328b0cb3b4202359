"""The reference configs shipped inside the package (``metarl/configs/<group>/<name>.yaml``).

They are package data, found with :mod:`importlib.resources`, so an installed wheel has them as a source
checkout does. ``--config`` takes a file path or a shipped config's name: ``maml-trpo/navigation2d``
(``.yaml`` and a leading ``configs/`` are optional, so commands written for a checkout still work).
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from metarl.errors import MissingFileError

SUFFIX = ".yaml"


def shipped_config_dir() -> Path:
    """The folder of the shipped configs (inside the installed package)."""
    return Path(str(resources.files("metarl").joinpath("configs")))


def shipped_configs(group: str) -> list[Path]:
    """The shipped configs of ``group`` (``maml-trpo``, ``reptile``, ``fewshot``), sorted by name."""
    folder = shipped_config_dir() / group
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def shipped_config_names() -> list[str]:
    """Every shipped config as ``<group>/<name>``."""
    root = shipped_config_dir()
    return sorted(path.relative_to(root).with_suffix("").as_posix() for path in root.glob(f"*/*{SUFFIX}"))


def config_file(spec: str) -> Path:
    """The YAML file ``--config spec`` means: an existing path, else the shipped config of that name.

    Raises:
        MissingFileError: neither (the message lists the closest shipped names).
    """
    path = Path(spec).expanduser()
    if path.exists():  # a folder too: loading it says that it is one
        return path
    name = spec.removeprefix("configs/").removesuffix(SUFFIX)
    shipped = shipped_config_dir() / f"{name}{SUFFIX}"
    if shipped.is_file():
        return shipped
    close = difflib.get_close_matches(name, shipped_config_names(), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise MissingFileError(
        f"config file {spec} not found, and no shipped config has that name (names look like "
        f"maml-trpo/navigation2d; they are the files of {shipped_config_dir()}){hint}"
    )

"""User task distributions outside metarl: entry points, ``--import``, and what a run records to find them again.

A package makes its task distributions known to metarl (the ``metarl`` command and :func:`make_env`) with an
entry point of the group ``metarl.envs``; the value is a module whose import registers the ids with
Gymnasium, or a function (``module:function``) that registers them when called with no arguments::

    [project.entry-points."metarl.envs"]
    mylab = "mylab.envs"                  # or "mylab.envs:register"

Without packaging, ``metarl train --import mylab.envs`` (a dotted module name, found from the current
directory as ``python -m`` finds it) or ``--import path/to/my_envs.py`` imports a module first. A run records
the modules its env needs in its config (``imports``), so ``metarl evaluate RUN`` and ``metarl train --resume
RUN`` import them again in a new process.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import gymnasium as gym

from metarl.errors import MissingFileError, UserError

ENTRY_POINT_GROUP = "metarl.envs"
IMPORT_HELP = (
    "import a module (dotted name, or a path to a .py file) that registers task distributions; repeatable"
)

# id -> where it came from ("entry point mylab = mylab.envs", "--import my_envs.py"), in registration order
_USER_IDS: dict[str, str] = {}
# module name -> the .py file it was imported from by path (a new process imports it by path again)
_FILE_MODULES: dict[str, str] = {}


def add_import_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--import MODULE`` (repeatable; ``args.imports``) to a sub-command's parser."""
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE", help=IMPORT_HELP
    )


def _recording_new_ids(source: str, load: Callable[[], object]) -> object:
    before = set(gym.registry)
    result = load()
    for env_id in gym.registry:
        if env_id not in before:
            _USER_IDS.setdefault(env_id, source)
    return result


def _run_entry_point(entry_point: EntryPoint) -> None:
    where = f"entry point {entry_point.name} = {entry_point.value} (group {ENTRY_POINT_GROUP})"
    try:
        loaded = entry_point.load()
    except ImportError as exc:
        raise UserError(
            f"{where} cannot be imported: {exc}; fix or uninstall the package that declares it"
        ) from exc
    if entry_point.attr is not None:
        if not callable(loaded):
            raise UserError(f"{where} must name a module or a function, got {type(loaded).__name__}")
        loaded()


@functools.cache
def load_entry_points() -> tuple[str, ...]:
    """Run every ``metarl.envs`` entry point once per process; returns the names of the entry points.

    Raises:
        UserError: an entry point cannot be imported or names something that is not callable.
    """
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    for entry_point in found:
        _recording_new_ids(
            f"entry point {entry_point.name} = {entry_point.value}",
            lambda ep=entry_point: _run_entry_point(ep),
        )
    return tuple(ep.name for ep in found)


def _import_file(path: Path) -> str:
    name = path.stem
    known = sys.modules.get(name)
    if known is not None and _FILE_MODULES.get(name) == str(path):
        return name
    if known is not None:
        raise UserError(f"cannot import {path}: a module named {name!r} is already imported; rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {path}: not a Python module (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so classes defined there pickle and resolve by module name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    _FILE_MODULES[name] = str(path)
    return name


def _import_name(name: str) -> None:
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does, so a project's own modules are found
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise  # the module exists but one of its own imports is missing: keep the traceback
        raise UserError(
            f"--import {name}: no module named {exc.name!r} (from {os.getcwd()}); pass a dotted module name "
            "importable from the current directory, or the path of a .py file"
        ) from None


def import_env_modules(modules: Iterable[str]) -> list[str]:
    """Import modules that register task distributions; returns them as a run records them.

    Args:
        modules: dotted module names, or paths of ``.py`` files (recorded as absolute paths).

    Raises:
        UserError: a module cannot be found (errors raised inside the module propagate unchanged).
    """
    resolved = []
    for module in modules:
        if module.endswith(".py") or os.sep in module:
            path = Path(module).expanduser().resolve()
            if not path.is_file():
                raise MissingFileError(f"--import {module}: file {path} not found")
            _recording_new_ids(f"--import {module}", lambda path=path: _import_file(path))
            resolved.append(str(path))
        else:
            _recording_new_ids(f"--import {module}", lambda name=module: _import_name(name))
            resolved.append(module)
    return resolved


def env_imports(env_id: str) -> list[str]:
    """What a new process must import for ``env_id`` to be registered: the module of its entry point.

    Empty for metarl's own envs and for ids that are not registered. An env defined in a script that is run
    directly (``__main__``) cannot be imported again: a warning says to move it into a module.
    """
    spec = gym.registry.get(env_id)
    if spec is None:
        return []
    entry = spec.entry_point
    module = entry.split(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", None)
    if module is None or module == "metarl" or module.startswith("metarl."):
        return []
    if module == "__main__":
        warnings.warn(
            f"{env_id} is defined in the script being run (__main__): `metarl evaluate` in another process "
            "cannot import it; define it in a module and import that (see docs/custom-envs.md)",
            stacklevel=2,
        )
        return []
    return [_FILE_MODULES.get(module, module)]


def user_env_ids() -> dict[str, str]:
    """Ids registered by entry points and ``--import`` in this process, with where each came from."""
    return dict(_USER_IDS)

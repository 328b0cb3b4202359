"""Checkpoints written atomically, loaded with clear errors, and the random-number state needed to resume exactly.

A checkpoint is a plain dict (model and optimizer ``state_dict``s, iteration, RNG states, ...) saved with
``torch.save`` into a temporary file that is renamed over the destination, so a run killed at any instant leaves
either the previous checkpoint or the new one, never a truncated file. ``capture_rng_states`` /
``restore_rng_states`` cover the global generators (Python ``random``, numpy's legacy global state, torch) plus
any explicit ``numpy.random.Generator`` / ``torch.Generator`` the run passes down, so that a resumed run draws
the same numbers an uninterrupted one would have drawn.

The resume recipe (``tests/training/test_training_kill_resume.py`` runs it with a SIGKILL in the middle)::

    # every iteration: log first, then checkpoint what the next iteration needs
    logger.log(iteration, scalars)
    logger.flush()
    save_checkpoint(run.checkpoint_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                          "iteration": iteration, "rng": capture_rng_states(generators)})
    # on resume: rebuild model, optimizer and generators as for a new run, then
    state = load_checkpoint(run.checkpoint_path, required_keys=("model", "optimizer", "iteration", "rng"))
    model.load_state_dict(state["model"]); optimizer.load_state_dict(state["optimizer"])
    restore_rng_states(state["rng"], generators)
    logger = RunLogger(run, resume_step=state["iteration"])   # drops lines logged after the checkpoint
    for iteration in range(state["iteration"] + 1, total): ...
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.errors import MissingFileError, UserError
from metarl.training.io import atomic_torch_save

__all__ = ["capture_rng_states", "load_checkpoint", "restore_rng_states", "save_checkpoint"]

Generators = Mapping[str, "np.random.Generator | torch.Generator"]


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Save ``state`` with ``torch.save`` atomically (temporary file in the same directory, fsync, rename).

    Args:
        path: Destination, e.g. ``run.checkpoint_path``. Parent directories are created.
        state: A dict of tensors, ``state_dict``s, numbers, RNG states, ... (anything picklable).

    Returns:
        The destination path.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(state).__name__}")
    return atomic_torch_save(dict(state), path)


def load_checkpoint(path: str | os.PathLike[str], required_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Load a checkpoint written by ``save_checkpoint`` onto the CPU.

    Args:
        path: The checkpoint file.
        required_keys: Keys the caller needs; a checkpoint lacking one is reported as incompatible.

    Returns:
        The saved dict.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated, corrupt, not a checkpoint dict, or lacks a required key.
    """
    target = Path(path)
    if not target.exists():
        raise MissingFileError(f"checkpoint {target} not found: check the run directory, or start a new run")
    if not target.is_file():
        raise UserError(f"checkpoint {target} is not a file")
    try:
        # weights_only=False: these are our own files and hold numpy RNG states and plain Python objects.
        state = torch.load(target, map_location="cpu", weights_only=False)
    except (
        RuntimeError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        ValueError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        TypeError,
        UnicodeDecodeError,
    ) as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(
            f"checkpoint {target} is corrupt or truncated ({type(exc).__name__}: {detail}): "
            "delete it to restart, or resume from an earlier copy"
        ) from None
    if not isinstance(state, dict):
        raise UserError(
            f"checkpoint {target} holds a {type(state).__name__}, not a checkpoint dict: "
            "it was not written by metarl; pass the checkpoint.pt of a metarl run"
        )
    missing = [key for key in required_keys if key not in state]
    if missing:
        raise UserError(
            f"checkpoint {target} lacks {', '.join(map(repr, missing))} (has {', '.join(map(repr, state))}): "
            "it was written by a different algorithm or version; start a new run"
        )
    return state


def capture_rng_states(generators: Generators | None = None) -> dict[str, Any]:
    """Snapshot every random-number state a run depends on.

    Args:
        generators: Named explicit generators (``numpy.random.Generator`` or ``torch.Generator``) to include.

    Returns:
        A picklable dict for the checkpoint: ``python``, ``numpy``, ``torch`` (+ ``torch_cuda`` when CUDA is
        initialised) and ``generators`` (name -> state).
    """
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - legacy global state, captured on purpose
        "torch": torch.get_rng_state(),
        "generators": {},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    for name, generator in (generators or {}).items():
        if isinstance(generator, np.random.Generator):
            state["generators"][name] = {"kind": "numpy", "state": generator.bit_generator.state}
        elif isinstance(generator, torch.Generator):
            state["generators"][name] = {"kind": "torch", "state": generator.get_state()}
        else:
            raise TypeError(
                f"generator {name!r} is a {type(generator).__name__}; expected numpy.random.Generator or torch.Generator"
            )
    return state


def restore_rng_states(state: Mapping[str, Any], generators: Generators | None = None) -> None:
    """Put back the states captured by ``capture_rng_states`` (globals, and each named generator in place).

    Args:
        state: The dict returned by ``capture_rng_states``.
        generators: The same named generators as at capture time; each is reset in place.

    Raises:
        ValueError: a named generator has no saved state, or its saved kind differs.
    """
    missing = [key for key in ("python", "numpy", "torch") if key not in state]
    if missing:
        raise UserError(
            f"RNG state lacks {', '.join(map(repr, missing))}: it was not made by capture_rng_states"
        )
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
    saved = state.get("generators", {})
    for name, generator in (generators or {}).items():
        if name not in saved:
            raise UserError(
                f"no saved state for generator {name!r} (saved: {', '.join(map(repr, saved)) or 'none'}): "
                "the checkpoint was written by a different version of the run"
            )
        entry = saved[name]
        if isinstance(generator, np.random.Generator) and entry["kind"] == "numpy":
            generator.bit_generator.state = entry["state"]
        elif isinstance(generator, torch.Generator) and entry["kind"] == "torch":
            generator.set_state(entry["state"])
        else:
            raise UserError(
                f"generator {name!r} is a {type(generator).__name__} but its saved state is a {entry['kind']} state"
            )

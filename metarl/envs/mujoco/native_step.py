"""Stepping a slice of ``MjData`` copies in one compiled call that holds no GIL.

Through the Python bindings each copy costs several GIL acquisitions per env step: setting ``ctrl``, the
``mj_step`` call (which releases the GIL and takes it back) and copying the gathered fields out, a few
microseconds of Python against about 25 of physics for HalfCheetah. Threads of
:class:`~metarl.envs.mujoco.engine.MujocoBatchedEnv` then queue for the GIL instead of stepping in parallel.
Here a numba function calls MuJoCo's C API (``mj_step``, ``mj_rnePostConstraint``) from ``libmujoco``, the same
library the bindings use, on the raw ``mjModel``/``mjData`` pointers, and copies controls and state with
``memcpy``: a worker thread's whole slice runs in one call, the same C calls in the same order as the bindings
make, so the results are bit for bit those of ``mujoco.mj_step``.

Where ``libmujoco`` cannot be found next to the bindings (:func:`native_stepper` returns ``None``), the engine
steps copies through the bindings as before. MuJoCo's hard errors (``mju_error``) raise a C++ exception that
cannot cross compiled frames: the process aborts instead of raising ``mujoco.FatalError``. ``mj_step`` reports
instabilities as warnings (it resets the copy), not errors, so locomotion models do not reach that path.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Callable, Sequence
from typing import Any

import mujoco
import numba
import numpy as np

ADDRESS = np.int64  # a C pointer (user-space addresses fit), passed to the C functions as size_t


def mujoco_library_path() -> str | None:
    """The ``libmujoco`` shared library shipped next to the ``mujoco`` bindings, or ``None``."""
    folder = os.path.dirname(mujoco.__file__)
    for pattern in (f"libmujoco.so.{mujoco.__version__}", "libmujoco.so*", "libmujoco*.dylib", "mujoco.dll"):
        found = sorted(glob.glob(os.path.join(folder, pattern)))
        if found:
            return found[0]
    return None


def _c_function(library: ctypes.CDLL, name: str, arguments: int) -> Any:
    function = getattr(library, name)
    function.argtypes = [ctypes.c_size_t] * arguments
    function.restype = None if name.startswith("mj") else ctypes.c_size_t
    return function


@functools.cache
def native_stepper() -> Callable[..., None] | None:
    """The compiled slice step (see :func:`step_copies` for its arguments), or ``None`` where ``libmujoco`` or the C
    library's ``memcpy`` cannot be loaded."""
    path = mujoco_library_path()
    if path is None:
        return None
    try:
        library = ctypes.CDLL(path)  # the library the bindings loaded: the same process-wide state
        mj_step = _c_function(library, "mj_step", 2)
        mj_rne_post_constraint = _c_function(library, "mj_rnePostConstraint", 2)
        memcpy = _c_function(
            ctypes.CDLL(None), "memcpy", 3
        )  # the C library's (not found this way on Windows)
    except (OSError, AttributeError, TypeError):
        return None

    addresses = numba.int64[:]
    signature = numba.void(
        addresses,
        addresses,
        addresses,
        addresses,
        numba.int64,
        numba.int64,
        numba.int64,
        numba.boolean,
        numba.int64[:, :],
    )

    @numba.njit(signature, nogil=True)  # compiled here, once per process (ctypes pointers cannot be cached)
    def step(indices, models, datas, ctrl_dst, ctrl_src, ctrl_bytes, frame_skip, post_constraint, fields):
        for k in indices:
            memcpy(ctrl_dst[k], ctrl_src + k * ctrl_bytes, ctrl_bytes)
            for _ in range(frame_skip):
                mj_step(models[k], datas[k])
            if post_constraint:
                mj_rne_post_constraint(models[k], datas[k])
            for f in range(fields.shape[0]):  # (destination row 0, row bytes, source of copy 0..n-1)
                memcpy(fields[f, 0] + k * fields[f, 1], fields[f, 2 + k], fields[f, 1])

    return step


class CopyAddresses:
    """The C addresses :func:`native_stepper`'s step reads and writes, for the copies of a batched engine.

    Args:
        num_copies: copies of the engine.
        state: the engine's gathered fields, one C-contiguous float64 buffer ``(num_copies, ...)`` each.
    """

    def __init__(self, num_copies: int, state: dict[str, np.ndarray]) -> None:
        self.names = list(state)
        self.models = np.zeros(num_copies, ADDRESS)
        self.datas = np.zeros(num_copies, ADDRESS)
        self.ctrl = np.zeros(num_copies, ADDRESS)
        self.fields = np.zeros((len(state), 2 + num_copies), ADDRESS)
        for f, buffer in enumerate(state.values()):
            if buffer.dtype != np.float64 or not buffer.flags.c_contiguous:
                raise ValueError("gathered fields must be C-contiguous float64 buffers")
            self.fields[f, 0] = buffer.ctypes.data
            self.fields[f, 1] = buffer[0].nbytes

    def set_copy(self, k: int, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Point copy ``k`` at its ``model`` and ``data`` (whose arrays stay where they are while it lives)."""
        self.models[k], self.datas[k] = model._address, data._address
        self.ctrl[k] = data.ctrl.ctypes.data
        for f, name in enumerate(self.names):
            self.fields[f, 2 + k] = getattr(data, name).ctypes.data


def step_copies(
    stepper: Callable[..., None],
    addresses: CopyAddresses,
    indices: Sequence[int] | np.ndarray,
    ctrl: np.ndarray,
    frame_skip: int,
    post_constraint: bool,
) -> None:
    """Copy ``ctrl[k]`` into copy ``k``'s controls, take ``frame_skip`` physics steps (then
    ``mj_rnePostConstraint`` if asked) and gather its fields, for every ``k`` in ``indices``, without the GIL.

    ``ctrl`` must be C-contiguous float64 ``(num_copies, nu)`` and outlive the call.
    """
    stepper(
        np.asarray(indices, dtype=np.int64),
        addresses.models,
        addresses.datas,
        addresses.ctrl,
        ADDRESS(ctrl.ctypes.data),
        ADDRESS(ctrl[0].nbytes),
        int(frame_skip),
        bool(post_constraint),
        addresses.fields,
    )

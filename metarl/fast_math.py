"""Compiled float32 math shared by metarl's numba kernels: a vectorisable ``tanh`` and sigmoid, and BLAS on one
thread while a kernel runs.

``tanh`` and the sigmoid (``sigmoid(x) = (1 + tanh(x / 2)) / 2``) use Eigen's rational float32 approximation of
tanh (as TensorFlow's CPU kernels do), within a few units in the last place of the exact value. Users: RL^2's
fused GRU (:mod:`metarl.agents.fused_gru`, :mod:`metarl.agents.recurrent_step`) and the Meta-LSTM's
coordinate-wise step (:mod:`metarl.supervised.learners.coordinate_lstm`).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

_ONE = np.float32(1.0)
_HALF = np.float32(0.5)
_TANH_CLAMP = np.float32(7.90531110763549805)  # tanh(x) rounds to +-1 in float32 beyond this
# Eigen's generic_fast_tanh_float: tanh(x) ~ x P(x^2) / Q(x^2), written out (and compiled with fastmath and numpy's
# error model, which drops the division's zero check) so that the gate loops vectorise.
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (
    np.float32(c)
    for c in (
        -2.76076847742355e-16,
        2.00018790482477e-13,
        -8.60467152213735e-11,
        5.12229709037114e-08,
        1.48572235717979e-05,
        6.37261928875436e-04,
        4.89352455891786e-03,
    )
)
_Q0, _Q1, _Q2, _Q3 = (
    np.float32(c)
    for c in (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
)


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def fast_tanh(x):
    """float32 tanh to within a few ulps (Eigen's rational approximation), for compiled loops that vectorise."""
    x = _TANH_CLAMP if x > _TANH_CLAMP else (-_TANH_CLAMP if x < -_TANH_CLAMP else x)
    x2 = x * x
    p = ((((((_P0 * x2 + _P1) * x2 + _P2) * x2 + _P3) * x2 + _P4) * x2 + _P5) * x2 + _P6) * x
    q = ((_Q0 * x2 + _Q1) * x2 + _Q2) * x2 + _Q3
    return p / q


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def fast_sigmoid(x):
    """The logistic function through :func:`fast_tanh`."""
    return _HALF * fast_tanh(_HALF * x) + _HALF


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's BLAS libraries (numba's ``np.dot`` calls SciPy's, loaded here before they are listed)."""
    import scipy.linalg.cython_blas  # noqa: F401

    return ThreadpoolController().select(user_api="blas")


def one_blas_thread() -> AbstractContextManager:
    """BLAS on one thread while a kernel runs. Its products are small (one step of a batch of trials); OpenBLAS's
    threads, which spin while they wait, would only compete with torch's and other processes' (on a busy 2-core
    machine a bandit update took 10.7 s instead of 0.8 s)."""
    return _blas().limit(limits=1)

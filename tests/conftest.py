"""Shared fixtures: every test leaves the global RNG states as it found them.

The few-shot commands find datasets under ``$METARL_DATA`` (else the user cache); the tests point it at
``../shared/data`` next to the checkout when that exists and nothing else was set.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("METARL_DATA", str(SHARED_DATA))


@pytest.fixture(autouse=True)
def _restore_rng_state():
    # the legacy global state is exactly what a careless test could disturb
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    yield
    random.setstate(py_state)
    np.random.set_state(np_state)  # noqa: NPY002
    torch.set_rng_state(torch_state)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA

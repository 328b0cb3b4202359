"""Checks of the actions a user (or another library) hands to ``step``, single and batched, with
Gymnasium-style one-line messages: an action of the wrong shape, type or range, or a NaN, is refused rather
than broadcast, truncated or turned into NaN observations."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from metarl.errors import UserError


def check_discrete_action(action: Any, n: int) -> int:
    """``action`` as an int in ``[0, n)``.

    Raises:
        UserError: not a single integer, or out of range.
    """
    if (
        isinstance(action, bool)
        or np.ndim(action) != 0
        or not np.issubdtype(np.asarray(action).dtype, np.integer)
    ):
        raise UserError(f"action must be an integer in [0, {n}), got {action!r}")
    index = int(action)
    if not 0 <= index < n:
        raise UserError(f"action must be an integer in [0, {n}), got {index}")
    return index


def check_box_action(action: Any, space: gym.spaces.Box) -> np.ndarray:
    """``action`` as a float64 array of the space's shape (values outside the box are the env's to clip).

    Raises:
        UserError: not numbers, the wrong shape, or not finite.
    """
    values = _numbers(action)
    if values.shape != space.shape:
        raise UserError(f"action must have shape {space.shape}, got {values.shape}")
    if not np.isfinite(values).all():
        raise UserError(f"action must be finite, got {action!r}")
    return values


def check_batched_actions(actions: Any, space: gym.spaces.Space, batch_shape: tuple[int, ...]) -> np.ndarray:
    """``actions`` for every copy of a batched engine, shaped ``batch_shape + action shape``.

    Raises:
        UserError: the wrong shape, not numbers, a NaN or inf (Box), or an index out of range (Discrete).
    """
    expected = batch_shape + tuple(space.shape or ())
    values = np.asarray(actions)  # its dtype is kept: the engines compute in the precision they are given
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise UserError(f"actions must be an array of numbers, got dtype {values.dtype}")
    if values.shape != expected:
        raise UserError(f"actions must have shape {expected}, got {values.shape}")
    if isinstance(space, gym.spaces.Discrete):
        if not np.issubdtype(values.dtype, np.integer):
            raise UserError(
                f"actions must be integers in [{space.start}, {space.start + space.n}), got {values.dtype}"
            )
        if values.size and ((values < space.start).any() or (values >= space.start + space.n).any()):
            raise UserError(f"actions must be integers in [{space.start}, {space.start + space.n})")
        return values
    if not np.isfinite(values).all():
        raise UserError("actions must be finite, got NaN or inf")
    return values


def _numbers(action: Any) -> np.ndarray:
    try:
        values = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"action must be an array of numbers, got {action!r}") from None
    return values

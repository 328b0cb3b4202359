"""Gittins indices of Bernoulli arms with Beta posteriors (Gittins 1979; Gittins, Glazebrook & Weber 2011).

The index of an arm in posterior state ``Beta(a, b)`` under discount ``gamma`` is the retirement reward
``lambda`` (per step) at which one is indifferent between retiring forever and pulling the arm once more and
then continuing optimally: the Bayes-optimal policy of the discounted infinite-horizon bandit pulls the arm of
highest index (the index theorem).

Calibration, for all states at once: for every ``lambda`` of a grid, one backward dynamic programme over the
posterior states ``(a + s, b + f)`` gives the advantage of pulling over retiring at every state,
``A(s, f; lambda)``, which decreases in ``lambda``; a state's index is the zero of ``A``, found between two grid
points by linear interpolation (``A`` is piecewise linear in ``lambda``, so between grid points where the optimal
stopping rule does not change the interpolation is exact). Beyond the truncation depth the arm's mean is taken
as known (value ``max(lambda, p) / (1 - gamma)``); the depth is chosen so that this changes values by less than
``tolerance``.
"""

from __future__ import annotations

import math

import numpy as np

from metarl.errors import UserError

DEFAULT_GRID = 401  # lambda values in [0, 1]; interpolation error is far below the grid step


def truncation_depth(discount: float, tolerance: float = 1e-5) -> int:
    """Pulls of lookahead after which ``discount**depth / (1 - discount) < tolerance``."""
    return max(1, math.ceil(math.log(tolerance * (1.0 - discount)) / math.log(discount)))


def gittins_indices(
    discount: float,
    max_pulls: int,
    prior: tuple[float, float] = (1.0, 1.0),
    grid: int = DEFAULT_GRID,
    tolerance: float = 1e-5,
) -> np.ndarray:
    """Gittins indices of every posterior reachable in ``max_pulls`` pulls of a Bernoulli arm.

    Args:
        discount: ``gamma`` in ``(0, 1)``.
        max_pulls: largest number of past pulls ``s + f`` of an arm whose index is wanted.
        prior: ``(a, b)`` of the Beta prior (``(1, 1)``: the uniform prior of the bandit envs).
        grid: number of retirement rewards in ``[0, 1]`` at which the programme is solved.
        tolerance: truncation error allowed on the values.

    Returns:
        ``(max_pulls + 1, max_pulls + 1)`` array: entry ``[s, f]`` (``s + f <= max_pulls``) is the index of
        ``Beta(a + s, b + f)`` as a per-step reward in ``[0, 1]``; entries with ``s + f > max_pulls`` are NaN.
    """
    if not 0.0 < discount < 1.0:
        raise UserError(f"the Gittins discount must lie in (0, 1), got {discount}")
    if max_pulls < 0 or grid < 2:
        raise UserError(f"need max_pulls >= 0 and grid >= 2, got {max_pulls} and {grid}")
    a0, b0 = prior
    lambdas = np.linspace(0.0, 1.0, grid)[:, None]  # (grid, 1): broadcast over states
    retire = lambdas / (1.0 - discount)
    depth = max_pulls + truncation_depth(discount, tolerance)
    mean = (a0 + np.arange(depth + 1)) / (a0 + b0 + depth)
    values = np.maximum(lambdas, mean) / (1.0 - discount)  # (grid, depth + 1), indexed by successes s
    table = np.full((max_pulls + 1, max_pulls + 1), np.nan)
    for pulls in range(depth - 1, -1, -1):
        successes = np.arange(pulls + 1)
        mean = (a0 + successes) / (a0 + b0 + pulls)
        pull = mean * (1.0 + discount * values[:, 1:]) + (1.0 - mean) * discount * values[:, :-1]
        values = np.maximum(pull, retire)
        if pulls <= max_pulls:
            table[successes, pulls - successes] = _zero_crossing(pull - retire, lambdas[:, 0])
    return table


def _zero_crossing(advantage: np.ndarray, lambdas: np.ndarray) -> np.ndarray:
    """Per column, the ``lambda`` where the decreasing ``advantage`` (grid, states) crosses zero."""
    positive = advantage >= 0.0
    last = np.clip(positive.sum(axis=0) - 1, 0, len(lambdas) - 2)  # last grid point with A >= 0
    columns = np.arange(advantage.shape[1])
    left, right = advantage[last, columns], advantage[last + 1, columns]
    fraction = np.clip(left / np.where(left > right, left - right, 1.0), 0.0, 1.0)
    return lambdas[last] + fraction * (lambdas[last + 1] - lambdas[last])

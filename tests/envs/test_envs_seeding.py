"""The per-copy generators, vectorised hashing or not, equal Gymnasium's ``np_random`` exactly, and reject what
Gymnasium rejects."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.error import Error as GymnasiumError
from gymnasium.utils import seeding as gym_seeding

from metarl.envs import seeding

SEEDS = [
    0,
    1,
    2,
    41,
    2**31,
    2**32 - 1,
    2**32,
    2**32 + 1,
    2**64 + 5,
    2**96 + 3,
    2**128 - 1,
    2**128,
    2**200 + 9,
]


def _same_generator(a: np.random.Generator, b: np.random.Generator) -> bool:
    """Same bit-generator state (so the same future draws); draws nothing."""
    return a.bit_generator.state == b.bit_generator.state


@pytest.mark.parametrize("vectorized_hashing", [False, True])
def test_generators_equal_gymnasium_np_random(vectorized_hashing):
    rng = np.random.default_rng(0)
    seeds = SEEDS + [int(s) for s in rng.integers(0, 2**63, size=100)]
    generators = seeding.env_generators(seeds, vectorized_hashing=vectorized_hashing)
    for seed, generator in zip(seeds, generators, strict=True):
        reference = gym_seeding.np_random(seed)[0]
        assert _same_generator(generator, reference), seed
        assert np.array_equal(generator.standard_normal(4), reference.standard_normal(4))


def test_vectorized_hashing_passes_its_self_check():
    assert seeding._fast_path_matches_numpy()


def test_failed_self_check_falls_back_to_the_same_generators(monkeypatch):
    fast = seeding.env_generators(SEEDS, vectorized_hashing=True)
    monkeypatch.setattr(seeding, "_fast_path_matches_numpy", lambda: False)
    for a, b in zip(fast, seeding.env_generators(SEEDS, vectorized_hashing=True), strict=True):
        assert _same_generator(a, b)


@pytest.mark.parametrize("vectorized_hashing", [False, True])
@pytest.mark.parametrize("bad_seed", [-1, np.int64(3), 1.5, "7"])
def test_invalid_seeds_raise_like_gymnasium(bad_seed, vectorized_hashing):
    with pytest.raises(GymnasiumError):
        gym_seeding.np_random(bad_seed)
    with pytest.raises(GymnasiumError):
        seeding.env_generators([0, bad_seed], vectorized_hashing=vectorized_hashing)


@pytest.mark.parametrize("vectorized_hashing", [False, True])
def test_copy_generators_reseed_and_continue(vectorized_hashing):
    copies = seeding.CopyGenerators(3, vectorized_hashing=vectorized_hashing)
    first = copies.reseed([10, None, 12])
    assert _same_generator(first[0], gym_seeding.np_random(10)[0])
    unseeded = first[1]
    assert unseeded is not None and not _same_generator(unseeded, gym_seeding.np_random(11)[0])
    draws = [g.random() for g in first]
    second = copies.reseed([None, None, None])  # no seed: every copy continues its own stream
    reference = gym_seeding.np_random(10)[0]
    reference.random()
    assert second[1] is unseeded and _same_generator(second[0], reference)
    assert draws[0] != second[0].random()
    third = copies.reseed([20, 21, 22])
    assert all(
        _same_generator(g, gym_seeding.np_random(s)[0]) for g, s in zip(third, [20, 21, 22], strict=True)
    )
    with pytest.raises(ValueError, match="expected 3 seeds"):
        copies.reseed([1, 2])

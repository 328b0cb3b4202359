"""Per-copy random generators for batched engines, seeded exactly like a single env's ``np_random``.

``env.reset(seed=s)`` gives the env ``gymnasium.utils.seeding.np_random(s)``: a ``Generator(PCG64(
SeedSequence(s)))``. :func:`env_generators` and :class:`CopyGenerators` build the same generators, by default
through Gymnasium itself. Engines that reseed hundreds of copies every round can ask for
``vectorized_hashing``: numpy's SeedSequence hashing (its documented algorithm, pool size 4, constants copied
from numpy) done for all seeds at once in numpy arrays, each ``PCG64`` then handed its precomputed state. The
generators are identical; ``BENCHMARKS.md`` has what it buys. A self-check against numpy runs once per process
and sends every seed down Gymnasium's path should numpy ever change the algorithm.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from gymnasium.utils import seeding
from numpy.random.bit_generator import ISeedSequence

# Constants of numpy.random.SeedSequence (numpy/random/bit_generator.pyx).
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_MULT_L, _MIX_MULT_R = 0xCA01F9DD, 0x4973F715
_XSHIFT = np.uint32(16)
_POOL_SIZE = 4
_MASK32 = 0xFFFFFFFF
_FAST_SEED_LIMIT = 1 << (32 * _POOL_SIZE)  # larger seeds have more entropy words than the pool


class _PrecomputedSeedSequence(ISeedSequence):
    """Hands PCG64 the state SeedSequence would have generated."""

    def __init__(self, state: np.ndarray) -> None:
        self._state = state

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        if n_words != 4 or np.dtype(dtype) != np.uint64:
            raise ValueError("precomputed seed state only serves PCG64 (4 uint64 words)")
        return self._state


def _pcg64_seed_states(seeds: Sequence[int]) -> np.ndarray:
    """``SeedSequence(s).generate_state(4, np.uint64)`` for every seed ``0 <= s < 2**128``, vectorised."""
    words = np.array(
        [[(int(s) >> (32 * i)) & _MASK32 for i in range(_POOL_SIZE)] for s in seeds], dtype=np.uint32
    ).reshape(-1, _POOL_SIZE)
    hash_const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_const
        value = value ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_A) & _MASK32
        value = value * np.uint32(hash_const)
        return value ^ (value >> _XSHIFT)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = np.uint32(_MIX_MULT_L) * x - np.uint32(_MIX_MULT_R) * y
        return result ^ (result >> _XSHIFT)

    with np.errstate(over="ignore"):
        # entropy shorter than the pool is zero-padded, which is what SeedSequence's hashmix(0) does
        pool = [hashmix(words[:, i]) for i in range(_POOL_SIZE)]
        for source in range(_POOL_SIZE):
            for target in range(_POOL_SIZE):
                if source != target:
                    pool[target] = mix(pool[target], hashmix(pool[source]))
        hash_const = _INIT_B
        state = []
        for i in range(8):  # 4 uint64 = 8 uint32 words, cycling over the pool
            value = pool[i % _POOL_SIZE] ^ np.uint32(hash_const)
            hash_const = (hash_const * _MULT_B) & _MASK32
            value = value * np.uint32(hash_const)
            state.append(value ^ (value >> _XSHIFT))
    return np.ascontiguousarray(np.stack(state, axis=1).astype("<u4")).view("<u8").astype(np.uint64)


@functools.cache
def _fast_path_matches_numpy() -> bool:
    probe = [0, 1, 12345, 2**32 + 7, 2**127 + 3]
    fast = _pcg64_seed_states(probe)
    return all(
        np.array_equal(fast[k], np.random.SeedSequence(s).generate_state(4, np.uint64))
        for k, s in enumerate(probe)
    )


def _is_fast_seed(seed: object) -> bool:
    return isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < _FAST_SEED_LIMIT


def env_generators(seeds: Sequence[int], *, vectorized_hashing: bool = False) -> list[np.random.Generator]:
    """``[gymnasium.utils.seeding.np_random(seed)[0] for seed in seeds]``.

    Args:
        seeds: one seed per generator.
        vectorized_hashing: hash the seeds all at once (see the module docstring): the same generators,
            built faster. Seeds outside ``[0, 2**128)`` (and every seed, should the self-check fail) still
            take Gymnasium's path, so invalid seeds raise Gymnasium's error.
    """
    seeds = list(seeds)
    fast = []
    if vectorized_hashing and _fast_path_matches_numpy():
        fast = [k for k, s in enumerate(seeds) if _is_fast_seed(s)]
    generators: list[np.random.Generator | None] = [None] * len(seeds)
    if fast:
        states = _pcg64_seed_states([seeds[k] for k in fast])
        for k, state in zip(fast, states, strict=True):
            generators[k] = np.random.Generator(np.random.PCG64(_PrecomputedSeedSequence(state)))
    for k, generator in enumerate(generators):
        if generator is None:
            generators[k] = seeding.np_random(seeds[k])[0]
    return generators  # type: ignore[return-value]


class CopyGenerators:
    """One ``numpy.random.Generator`` per batched copy, seeded exactly like the single env's ``np_random``.

    A copy reset with a seed gets the generator of ``env.reset(seed=seed)``; a copy reset with ``None``
    continues its own stream (or gets fresh entropy on its first reset), like a single env.

    Args:
        num_copies: copies in the batch.
        vectorized_hashing: build seeded generators with :func:`env_generators`' ``vectorized_hashing``.
    """

    def __init__(self, num_copies: int, *, vectorized_hashing: bool = False) -> None:
        self.generators: list[np.random.Generator | None] = [None] * num_copies
        self.vectorized_hashing = bool(vectorized_hashing)

    def reseed(self, seeds: Sequence[int | None]) -> list[np.random.Generator]:
        """Apply one round of per-copy seeds; returns the generators in row-major copy order."""
        if len(seeds) != len(self.generators):
            raise ValueError(f"expected {len(self.generators)} seeds, got {len(seeds)}")
        seeded = [k for k, s in enumerate(seeds) if s is not None]
        new = env_generators([seeds[k] for k in seeded], vectorized_hashing=self.vectorized_hashing)
        for k, generator in zip(seeded, new, strict=True):
            self.generators[k] = generator
        for k, generator in enumerate(self.generators):
            if generator is None:
                self.generators[k] = seeding.np_random(None)[0]
        return self.generators  # type: ignore[return-value]


#: ``SeedSequence`` spawn key of the task stream: a child of the seed, so tasks and episodes never share numbers.
TASK_STREAM_KEY = 1


def task_generator(seed: int | None) -> np.random.Generator:
    """The generator that draws tasks for an env reset with ``seed`` (fresh entropy for ``None``).

    It is the ``(TASK_STREAM_KEY,)`` child of ``SeedSequence(seed)``, independent of the env's own ``np_random``
    (``SeedSequence(seed)`` itself), so resampling tasks does not shift the episodes' random numbers.
    """
    if seed is None:
        return np.random.default_rng()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(TASK_STREAM_KEY,))))

"""Our antithetic ES estimator (metarl.core.es) against EvoTorch's (``SymmetricSeparableGaussian``, the search
distribution of its PGPE/OpenAI-ES): the same directions and fitnesses give the same gradient (EvoTorch's is with
respect to the mean of the search distribution, ``sigma^2`` times ours), and the time of one update for a policy of
about 5,000 parameters. EvoTorch is not a metarl dependency: install it (with its own dependencies, among them
Ray and pandas) to run this, e.g. ``pip install evotorch``.

    OMP_NUM_THREADS=1 python scripts/bench_es_evotorch.py [--pairs 20] [--dim 5000] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from metarl.core import antithetic_directions, antithetic_gradient, antithetic_population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--dim", type=int, default=5000)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    from evotorch.distributions import SymmetricSeparableGaussian

    import_seconds = time.perf_counter() - started
    n, dim, sigma = args.pairs, args.dim, args.sigma
    center = torch.randn(dim, generator=torch.Generator().manual_seed(0))
    target = torch.randn(dim, generator=torch.Generator().manual_seed(1))

    def fitness(vectors: torch.Tensor) -> torch.Tensor:
        return -((vectors - target) ** 2).sum(-1)

    def ours(generator: torch.Generator) -> torch.Tensor:
        directions = antithetic_directions(n, dim, generator)
        population = antithetic_population(center, directions, sigma)
        return antithetic_gradient(directions, fitness(population), sigma)

    distribution = SymmetricSeparableGaussian(
        {"mu": center.clone(), "sigma": torch.full((dim,), sigma), "divide_mu_grad_by": "num_directions"}
    )

    def evotorch(generator: torch.Generator) -> torch.Tensor:
        samples = distribution.sample(2 * n, generator=generator)  # interleaved: +eps0, -eps0, +eps1, ...
        grads = distribution.compute_gradients(
            samples, fitness(samples), objective_sense="max", ranking_method="centered"
        )
        return grads["mu"]

    # Same directions: feed EvoTorch our population in its interleaved order.
    directions = antithetic_directions(n, dim, torch.Generator().manual_seed(2))
    population = antithetic_population(center, directions, sigma)
    interleaved = torch.stack([population[:n], population[n:]], dim=1).reshape(2 * n, dim)
    theirs = distribution.compute_gradients(
        interleaved, fitness(interleaved), objective_sense="max", ranking_method="centered"
    )["mu"]
    mine = antithetic_gradient(directions, fitness(population), sigma)
    difference = float((theirs / sigma**2 - mine).abs().max() / mine.abs().max())

    def seconds(update) -> float:
        generator = torch.Generator().manual_seed(3)
        update(generator)
        tick = time.perf_counter()
        for _ in range(args.repeats):
            update(generator)
        return (time.perf_counter() - tick) / args.repeats

    result = {
        "pairs": n,
        "dim": dim,
        "max_relative_difference": difference,
        "metarl_update_ms": 1e3 * seconds(ours),
        "evotorch_update_ms": 1e3 * seconds(evotorch),
        "evotorch_import_s": import_seconds,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

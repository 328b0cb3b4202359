"""Where a PEARL run's adaptation breaks: the policy's return on training tasks for three kinds of context.

For the first ``--tasks`` training tasks of a run (``metarl train --algo pearl``), z is the posterior mean of
one of these contexts, and the return is that of one deterministic episode with that z:

* ``encoder buffer``: ``pearl.context_batch_size`` transitions of the task's encoder buffer, the kind of context
  the encoder is trained on;
* ``deterministic prior episode``: one episode played with z from the prior and deterministic actions, the
  context the evaluation has after its first episode;
* ``stochastic prior episode``: the same with sampled actions.

A good return from the encoder buffer and a poor one from the evaluation's context means the encoder has not
learned to read the contexts it meets at test time (docs/algorithms/pearl.md, Navigation2D).

    python scripts/pearl_context_probe.py runs/pearl-nav [--tasks 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys

import torch

from metarl.agents.latent_rollout import context_inputs
from metarl.agents.registry import load_agent
from metarl.errors import UserError


def probe(run_dir: str, num_tasks: int, seed: int) -> dict[str, float]:
    """``{context kind: mean return over the tasks}`` for the run's latest checkpoint."""
    agent = load_agent(run_dir)
    if agent.algo != "pearl":
        raise UserError(f"{run_dir} is a {agent.algo} run; this probe reads PEARL runs")
    cfg = agent.config.pearl
    rows = torch.arange(min(num_tasks, cfg.train_tasks))
    tasks = [agent.train_tasks[int(r)] for r in rows]
    generator = torch.Generator().manual_seed(seed)

    def returns_with(mean: torch.Tensor) -> float:
        episode = agent.rollout.run(
            agent.policy, tasks, mean.unsqueeze(1), seed, generator, deterministic=True
        )
        return float(episode.returns()[:, 0].mean())

    results = {}
    with torch.no_grad():
        buffer = context_inputs(
            agent.encoder_buffer.sample(rows, cfg.context_batch_size, generator), cfg.context_next_obs
        )
        results["encoder buffer"] = returns_with(agent.encoder(buffer)[0])
        for name, deterministic in (
            ("deterministic prior episode", True),
            ("stochastic prior episode", False),
        ):
            prior = torch.randn(len(rows), 1, cfg.latent_size, generator=generator)
            episode = agent.rollout.run(
                agent.policy, tasks, prior, seed + 1, generator, deterministic=deterministic
            )
            context, mask = episode.context(cfg.context_next_obs)
            results[name] = returns_with(agent.encoder(context, mask.to(torch.float32))[0])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a PEARL run directory")
    parser.add_argument("--tasks", type=int, default=16, help="training tasks probed (default 16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error(f"--tasks must be >= 1, got {args.tasks}")
    torch.set_num_threads(1)
    try:
        results = probe(args.run_dir, args.tasks, args.seed)
    except UserError as exc:
        print(f"pearl_context_probe: {exc}", file=sys.stderr)
        return 2
    width = max(map(len, results))
    print(f"{'context of z (posterior mean)':<{width}}  return of one deterministic episode")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

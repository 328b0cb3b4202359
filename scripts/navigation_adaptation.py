"""Where one adaptation step lands on Navigation2D: the held-out tasks of a run, grouped by goal distance.

For a `metarl train` run on `MetaRL/Navigation2D-v0`, fine-tunes the meta-learned policy with one step on the
run's 40 held-out tasks, with the evaluation protocol of `metarl evaluate` (same tasks, env seeds and action
noise, so the mean return equals its step-1 column), then rolls out the adapted *mean* action. Prints, per
quarter of the tasks sorted by goal distance: the goal distance, the return with and without action noise, how
far the deterministic rollout ends from the goal and from the origin; and how far the pre-update episodes
stray from the start (the exploration the adaptation step learns from).

    python scripts/navigation_adaptation.py RUN_DIR [--episodes N] [--tasks N] [--json PATH]

A policy that learns only the goal's direction in one step ends at the same distance from the origin for every
goal; one that also learns its distance ends near the goal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from metarl.agents import MetaRLAgent
from metarl.agents.agent import EVAL_STREAM, stream_rng, torch_generator
from metarl.agents.evaluate import held_out_tasks
from metarl.agents.inner import FineTuner
from metarl.agents.policies import stack_params
from metarl.agents.sampler import BatchedSampler
from metarl.envs import make_batched
from metarl.training.io import write_json_atomic

ENV_ID = "MetaRL/Navigation2D-v0"


def deterministic_rollout(sampler: BatchedSampler, params, tasks) -> tuple[np.ndarray, np.ndarray]:
    """Return per task and final position of one episode that takes the policy's mean action."""
    benv = make_batched(sampler.env_id, tasks, 1, seed=0, **sampler.env_kwargs)
    obs = benv.reset(seed=0)
    returns = np.zeros(len(tasks))
    with torch.no_grad():
        for _ in range(benv.horizon):
            mean = sampler.policy.distribution_parameters(torch.as_tensor(obs, dtype=torch.float32), params)[
                0
            ]
            obs, reward, _, _, _ = benv.step(sampler.env_actions(mean))
            returns += reward[:, 0]
            if benv.done.all():
                break
    return returns, obs[:, 0].astype(np.float64)


def analyse(run_dir: str, episodes: int | None = None, num_tasks: int | None = None) -> dict:
    """The per-quarter table of ``run_dir`` (see the module docstring) as a dict."""
    agent = MetaRLAgent.from_run(run_dir)
    config = agent.config
    if config.env != ENV_ID:
        raise SystemExit(f"{run_dir} trained on {config.env}; this analysis is for {ENV_ID}")
    tasks = held_out_tasks(config, num_tasks or config.evaluation.tasks, agent.sampler.env)
    sampler = BatchedSampler(
        config.env,
        config.env_kwargs,
        agent.policy,
        episodes or config.evaluation.episodes_per_task or config.episodes_per_task,
        normalized_actions=config.policy.normalized_actions,
    )
    theta = stack_params({n: p.detach() for n, p in agent.policy.params().items()}, len(tasks))
    rng = stream_rng(config.seed, EVAL_STREAM, 1)  # the stream of metarl evaluate's fine-tuning
    generator = torch_generator(rng)
    pre = sampler.sample(theta, tasks, seed=int(rng.integers(2**31)), generator=generator)
    rng = stream_rng(config.seed, EVAL_STREAM, 1)
    result = FineTuner(agent.policy, config.inner, config.gamma, config.gae_lambda).run(
        theta, tasks, sampler, rng, torch_generator(rng), steps=1, lr=agent.adaptation_lr()
    )
    adapted_returns = result.returns[:, 1].numpy().astype(np.float64)
    deterministic, final = deterministic_rollout(sampler, result.params, tasks)
    goals = np.array([t.goal for t in tasks])
    distance = np.linalg.norm(goals, axis=1)
    spread = pre.observations.norm(dim=-1)  # (T, E, H): distance from the start of every pre-update step
    mask = pre.mask.bool()
    order = np.argsort(distance)
    quarters = []
    for rows in np.array_split(order, 4):
        quarters.append(
            {
                "goal_distance": float(distance[rows].mean()),
                "return_after_step1": float(adapted_returns[rows].mean()),
                "deterministic_return": float(deterministic[rows].mean()),
                "final_distance_to_goal": float(np.linalg.norm(final[rows] - goals[rows], axis=1).mean()),
                "final_distance_from_start": float(np.linalg.norm(final[rows], axis=1).mean()),
            }
        )
    return {
        "run": str(run_dir),
        "tasks": len(tasks),
        "return_after_step1": float(adapted_returns.mean()),
        "deterministic_return": float(deterministic.mean()),
        "pre_update_distance_from_start": float(spread[mask].mean()),
        "pre_update_std": torch.exp(
            agent.policy.params()["log_std"].detach().clamp_min(agent.policy.min_log_std)
        )
        .mean()
        .item(),
        "quarters": quarters,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir")
    parser.add_argument(
        "--episodes", type=int, default=None, help="episodes per task (default: the evaluation's)"
    )
    parser.add_argument(
        "--tasks", type=int, default=None, help="held-out tasks (default: the evaluation's, 40)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    report = analyse(args.run_dir, args.episodes, args.tasks)
    print(
        f"{report['run']}: {report['tasks']} held-out tasks, return after 1 step {report['return_after_step1']:.2f}"
        f" (mean action: {report['deterministic_return']:.2f}); pre-update episodes stay"
        f" {report['pre_update_distance_from_start']:.3f} from the start on average (policy std"
        f" {report['pre_update_std']:.2f} in action units)"
    )
    header = ["goal distance", "return", "mean-action return", "ends from goal", "ends from start"]
    print("  ".join(f"{h:>18}" for h in header))
    for q in report["quarters"]:
        values = [
            q["goal_distance"],
            q["return_after_step1"],
            q["deterministic_return"],
            q["final_distance_to_goal"],
            q["final_distance_from_start"],
        ]
        print("  ".join(f"{v:18.3f}" for v in values))
    if args.json:
        write_json_atomic(args.json, report)


if __name__ == "__main__":
    main()

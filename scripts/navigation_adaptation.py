"""Where one adaptation step lands on Navigation2D: the held-out tasks of a run, grouped by goal distance.

For a `metarl train` run on `MetaRL/Navigation2D-v0`, fine-tunes the meta-learned policy with one step on the
run's 40 held-out tasks, with the evaluation protocol of `metarl evaluate` (same tasks, env seeds and action
noise, so the mean return equals its step-1 column), then rolls out the adapted *mean* action. Prints, per
quarter of the tasks sorted by goal distance: the goal distance, the return with and without action noise, how
far the deterministic rollout ends from the goal and from the origin; and how far the pre-update episodes
stray from the start (the exploration the adaptation step learns from).

    python scripts/navigation_adaptation.py RUN_DIR [--episodes N] [--tasks N] [--json PATH]

A policy that learns only the goal's direction in one step ends at the same distance from the origin for every
goal; one that also learns its distance ends near the goal. The report's last line bounds what direction alone
can score: the return, on the same tasks, of the best controller that knows each goal's direction but not its
distance (it runs at full speed to the distance that is best for goals in that direction, then holds; the
distances are fitted on other goals from the task distribution), next to the same controller told the goal.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from metarl.agents import load_agent
from metarl.agents.evaluate import held_out_tasks
from metarl.agents.inner import FineTuner
from metarl.agents.sampler import BatchedSampler
from metarl.agents.streams import EVAL_STREAM, stream_rng, torch_generator
from metarl.core import stack_over_tasks
from metarl.envs import make_batched, sample_tasks
from metarl.training.io import write_json_atomic

ENV_ID = "MetaRL/Navigation2D-v0"
DIRECTION_BINS = 8  # sectors of [0, 45] degrees (the goal square's symmetries fold every angle into it)
FIT_GOALS = 4000  # goals the per-sector distances are fitted on...
FIT_SEED = 2017  # ...drawn with this seed, the same for every run
HOLD_DISTANCES = np.linspace(0.0, 0.72, 73)  # candidate distances (the farthest goal is 0.71 from the start)


def rollout(tasks, episodes: int, env_kwargs: dict | None, controller) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(tasks, episodes)`` and final positions of episodes whose actions are ``controller(obs)``."""
    benv = make_batched(ENV_ID, tasks, episodes, seed=0, **(env_kwargs or {}))
    obs = benv.reset(seed=0)
    returns = np.zeros((len(tasks), episodes))
    for _ in range(benv.horizon):
        obs, reward, _, _, _ = benv.step(controller(obs))
        returns += reward
        if benv.done.all():
            break
    return returns, obs.astype(np.float64)


def deterministic_rollout(sampler: BatchedSampler, params, tasks) -> tuple[np.ndarray, np.ndarray]:
    """Return per task and final position of one episode that takes the policy's mean action."""

    def mean_action(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            observations = torch.as_tensor(obs, dtype=torch.float32)
            return sampler.env_actions(sampler.policy.distribution_parameters(observations, params)[0])

    returns, final = rollout(tasks, 1, sampler.env_kwargs, mean_action)
    return returns[:, 0], final[:, 0]


def hold_returns(tasks, targets: np.ndarray, env_kwargs: dict | None = None) -> np.ndarray:
    """Return per task and target of one episode that moves at full speed to ``targets[i, k]`` and stays there.

    ``targets`` is ``(tasks, K, 2)``; the env clips each step's displacement to its action box.
    """
    return rollout(tasks, targets.shape[1], env_kwargs, lambda obs: targets - obs)[0]


def direction_sector(goals: np.ndarray) -> np.ndarray:
    """Index in ``[0, DIRECTION_BINS)`` of each goal's angle from the nearest axis, in equal sectors of 45 degrees.

    Goals are uniform on a square centred on the start, so the distance to a goal has the same distribution in
    all eight directions that the square's reflections map onto each other.
    """
    angle = np.arctan2(np.abs(goals[:, 1]), np.abs(goals[:, 0]))
    from_axis = np.minimum(angle, np.pi / 2 - angle)
    return np.minimum((from_axis / (np.pi / 4) * DIRECTION_BINS).astype(int), DIRECTION_BINS - 1)


def unit_directions(goals: np.ndarray) -> np.ndarray:
    """Each goal's direction from the start (the origin)."""
    return goals / np.maximum(np.linalg.norm(goals, axis=1, keepdims=True), 1e-12)


def fit_hold_distances(
    env, seed: int, env_kwargs: dict | None = None, num_goals: int = FIT_GOALS
) -> np.ndarray:
    """Per direction sector, the holding distance with the best mean return on ``num_goals`` fresh goals."""
    fit = sample_tasks(env, num_goals, seed)
    goals = np.array([t.goal for t in fit])
    targets = unit_directions(goals)[:, None, :] * HOLD_DISTANCES[None, :, None]
    returns = hold_returns(fit, targets, env_kwargs)
    sectors = direction_sector(goals)
    return np.array([HOLD_DISTANCES[returns[sectors == b].mean(0).argmax()] for b in range(DIRECTION_BINS)])


def direction_only_bound(tasks, distances: np.ndarray, env_kwargs: dict | None = None) -> dict:
    """Mean returns on ``tasks`` of the controller holding at ``distances`` (per sector) and of one told the goal."""
    goals = np.array([t.goal for t in tasks])
    guessed = unit_directions(goals) * distances[direction_sector(goals)][:, None]
    both = hold_returns(tasks, np.stack([guessed, goals], axis=1), env_kwargs)
    return {"direction_only_return": float(both[:, 0].mean()), "goal_known_return": float(both[:, 1].mean())}


def analyse(run_dir: str, episodes: int | None = None, num_tasks: int | None = None) -> dict:
    """The per-quarter table of ``run_dir`` (see the module docstring) as a dict."""
    agent = load_agent(run_dir)
    config = agent.config
    if config.env != ENV_ID:
        raise SystemExit(f"{run_dir} trained on {config.env}; this analysis is for {ENV_ID}")
    tasks = held_out_tasks(config, num_tasks or config.evaluation.tasks, agent.sampler.env)
    sampler = BatchedSampler.from_config(
        config,
        agent.policy,
        episodes or config.evaluation.episodes_per_task or config.episodes_per_task,
        task_features=False,
    )
    theta = stack_over_tasks({n: p.detach() for n, p in agent.policy.params().items()}, len(tasks), copy=True)
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
    distances = fit_hold_distances(agent.sampler.env, FIT_SEED, config.env_kwargs)
    bound = direction_only_bound(tasks, distances, config.env_kwargs)
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
        **bound,
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
    print(
        f"direction alone: the best controller that knows each goal's direction but not its distance scores"
        f" {report['direction_only_return']:.2f} on these tasks (told the goal: {report['goal_known_return']:.2f})"
    )
    if args.json:
        write_json_atomic(args.json, report)


if __name__ == "__main__":
    main()

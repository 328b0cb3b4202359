"""A GIF of a trained run's policy on one held-out task, before and after it adapts.

Fine-tunes the run's policy on one of its held-out tasks with ``metarl evaluate``'s protocol (same tasks, env
seeds and action noise), then plays one episode with the policy before adaptation (left) and after
``--adapt-steps`` steps (right), side by side, drawn by the env's ``render_mode="rgb_array"``.

    python scripts/record_adaptation.py RUN_DIR [--task 0] [--adapt-steps 1] [--output RUN_DIR/adaptation.gif]

Works for every env that renders ``rgb_array`` images (Navigation2D, the bandits, TabularMDP, the MuJoCo
robots, and a user's env that implements ``render``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metarl.agents import load_agent
from metarl.agents.agent import GradientMetaRLAgent
from metarl.agents.evaluate import held_out_tasks
from metarl.agents.inner import FineTuner
from metarl.agents.policies import encode_observations
from metarl.agents.sampler import make_env
from metarl.agents.streams import EVAL_STREAM, stream_rng, torch_generator
from metarl.core import Params, stack_over_tasks
from metarl.envs import Task
from metarl.errors import UserError

FRAME_MILLISECONDS = 80
GAP = 8  # pixels between the two panels


def adapted_params(agent: GradientMetaRLAgent, task: Task, steps: int) -> tuple[Params, Params]:
    """The policy's parameters for ``task`` before and after ``steps`` fine-tuning steps (stacked, one task)."""
    config = agent.config
    start = stack_over_tasks(agent.policy.params(), 1, copy=True)
    rng = stream_rng(config.seed, EVAL_STREAM, 1)
    tuner = FineTuner(agent.policy, config.inner, config.gamma, config.gae_lambda)
    result = tuner.run(
        start,
        [task],
        agent.sampler,
        rng,
        torch_generator(rng),
        steps,
        lr=agent.adaptation_lr(),
        sample_after_last=False,
    )
    return start, result.params


@torch.no_grad()
def episode_frames(
    agent: GradientMetaRLAgent, task: Task, params: Params, seed: int
) -> tuple[list[np.ndarray], float]:
    """The rendered frames and the return of one episode of ``task`` with ``params``."""
    config = agent.config
    env = make_env(config.env, {**config.env_kwargs, "render_mode": "rgb_array"})
    env.unwrapped.set_task(task)
    obs, _ = env.reset(seed=seed)
    generator = torch_generator(np.random.default_rng(seed))
    frames, total = [env.render()], 0.0
    while True:
        encoded = encode_observations(agent.sampler.observation_space, np.asarray(obs)[None, None])
        action = agent.sampler.env_actions(agent.policy.act(encoded, params, generator))[0, 0]
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(env.render())
        total += float(reward)
        if terminated or truncated:
            env.close()
            return frames, total


def side_by_side(left: list[np.ndarray], right: list[np.ndarray]) -> list[Image.Image]:
    """Frames of the two episodes next to each other; the shorter one holds its last frame."""
    frames = []
    for t in range(max(len(left), len(right))):
        a, b = left[min(t, len(left) - 1)], right[min(t, len(right) - 1)]
        height = max(a.shape[0], b.shape[0])
        canvas = np.full((height, a.shape[1] + GAP + b.shape[1], 3), 255, dtype=np.uint8)
        canvas[: a.shape[0], : a.shape[1]] = a
        canvas[: b.shape[0], a.shape[1] + GAP :] = b
        frames.append(Image.fromarray(canvas))
    return frames


def record(run_dir: str, task_index: int = 0, adapt_steps: int = 1, output: str | None = None) -> dict:
    """Write the GIF; returns where, and the two episodes' returns."""
    agent = load_agent(run_dir)
    config = agent.config
    if config.oracle:
        raise UserError("an oracle run sees its task: there is no adaptation to show")
    tasks = held_out_tasks(config, max(2, task_index + 1), agent.sampler.env)
    task = tasks[task_index]
    before, after = adapted_params(agent, task, adapt_steps)
    seed = int(stream_rng(config.seed, EVAL_STREAM, 3).integers(2**31))  # both episodes: the same env seed
    left, before_return = episode_frames(agent, task, before, seed)
    right, after_return = episode_frames(agent, task, after, seed)
    target = Path(output) if output else Path(run_dir) / "adaptation.gif"
    first, *rest = side_by_side(left, right)
    first.save(target, save_all=True, append_images=rest, duration=FRAME_MILLISECONDS, loop=0)
    return {
        "gif": str(target),
        "frames": 1 + len(rest),
        "return_before": before_return,
        "return_after": after_return,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a run directory written by `metarl train`")
    parser.add_argument("--task", type=int, default=0, help="index of the held-out task (default 0)")
    parser.add_argument("--adapt-steps", type=int, default=1, help="fine-tuning steps (default 1)")
    parser.add_argument("--output", help="the GIF (default RUN_DIR/adaptation.gif)")
    args = parser.parse_args(argv)
    report = record(args.run_dir, args.task, args.adapt_steps, args.output)
    print(
        f"{report['gif']}: {report['frames']} frames; return before adaptation {report['return_before']:.2f}, "
        f"after {args.adapt_steps} step(s) {report['return_after']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

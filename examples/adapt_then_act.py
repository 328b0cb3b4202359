"""Adapt, then act: load a trained run, fine-tune it on one new task and use it as any trained policy.

::

    python examples/adapt_then_act.py runs/nav-maml

The run is one of ``metarl train`` (or ``examples/train_and_evaluate.py``) on ``MetaRL/Navigation2D-v0``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

# --8<-- [start:adapt]
import gymnasium as gym

import metarl
from metarl.agents import load_adapted_policy


def adapt_then_act(run_dir: str, steps: int = 1) -> float:
    """Adapt the run's policy to the goal (0.3, -0.2) and return one episode's return with its mean action."""
    agent = metarl.load(run_dir)  # the meta-learned policy, as the run's last checkpoint has it
    env = gym.make("MetaRL/Navigation2D-v0", task={"goal_x": 0.3, "goal_y": -0.2})
    policy = agent.adapt(env, steps=steps)  # `steps` policy-gradient steps on fresh episodes of this task

    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)  # Stable-Baselines3's signature
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + float(reward), terminated or truncated

    with tempfile.TemporaryDirectory() as tmp:  # tensors and numbers only: no pickle
        policy.save(Path(tmp) / "adapted.pt")
        again = load_adapted_policy(Path(tmp) / "adapted.pt")
    assert (again.predict(obs, deterministic=True)[0] == policy.predict(obs, deterministic=True)[0]).all()
    return total
    # --8<-- [end:adapt]


def main() -> None:
    parser = argparse.ArgumentParser(description="Adapt a trained Navigation2D run to one goal and act.")
    parser.add_argument("run_dir", help="a run directory of metarl train on MetaRL/Navigation2D-v0")
    parser.add_argument("--steps", type=int, default=1, help="adaptation steps")
    args = parser.parse_args()
    print(f"return after {args.steps} adaptation step(s): {adapt_then_act(args.run_dir, args.steps):.2f}")


if __name__ == "__main__":
    main()

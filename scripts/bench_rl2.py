"""Env steps per second of RL^2 on Navigation2D: metarl's RL2 against sb3-contrib's RecurrentPPO, the recurrent
PPO a user would otherwise pick, on the same trials and the same batch.

* metarl: :class:`metarl.agents.RL2` with the reference config ``rl2/navigation2d`` (N = meta_batch_size x
  episodes_per_task parallel trials of k episodes of 100 steps; GRU policy and value function; PPO epochs over
  minibatches of whole trials). Sampling plays all trials on the batched engine; the update is one call of
  :func:`metarl.agents.recurrent_ppo.ppo_update`.
* sb3-contrib: ``RecurrentPPO("MlpLstmPolicy")`` on a ``DummyVecEnv`` of N
  :class:`metarl.envs.TrialWrapper` (Navigation2D, k) envs: one rollout of ``n_steps = k x 100`` steps per env
  (a trial each), ``batch_size`` = the rollout / minibatches, the same epochs, clip, GAE, learning rate and
  hidden size, separate actor and critic LSTMs and linear heads (``net_arch=[]``), as metarl's separate GRUs. Its
  LSTM has 4 gates to the GRU's 3: the recurrence costs it about 4/3 of metarl's at the same width.

Both count the env steps a round actually took (a trial that reaches its goal ends early in metarl; the vector
env starts another trial). The update's rate is the round's env steps over the update's seconds, the round's
over sampling and update together. Freed memory is kept for reuse (:func:`metarl.memory.keep_freed_memory`, as
training runs do by default, for both implementations; ``--system-malloc`` leaves malloc as it is). Prints a
table; ``--json PATH`` writes the numbers. Take timings on an otherwise idle machine.

    python scripts/bench_rl2.py                  # the reference batch, 3 measured rounds each (after 1 warm-up)
    python scripts/bench_rl2.py --quick          # 8 trials of 2 episodes of 20 steps, 1 round: a smoke run
    python scripts/bench_rl2.py --json bench_rl2.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import torch

from metarl.agents import RL2, TrainConfig
from metarl.agents.recurrent_ppo import ppo_update
from metarl.envs import TrialWrapper, sample_tasks
from metarl.memory import keep_freed_memory
from metarl.training import config_file, load_config
from metarl.training.io import write_json_atomic

CONFIG = "rl2/navigation2d"
QUICK = ["meta_batch_size=8", "episodes_per_task=1", "env_kwargs.horizon=20", "rl2.episodes_per_trial=2"]


def measure_metarl(config: TrainConfig, rounds: int, warmup: int) -> dict:
    """Median seconds of sampling and of the PPO update per round, and the round's env steps."""
    agent = RL2(config)
    rows = []
    for i in range(warmup + rounds):
        generator = torch.Generator().manual_seed(i)
        tasks = sample_tasks(agent.env, config.meta_batch_size, i)
        tick = time.perf_counter()
        trials = agent.sample(tasks, config.episodes_per_task, config.rl2.episodes_per_trial, i, generator)
        sampled = time.perf_counter()
        ppo_update(
            agent.policy, agent.optimizer, trials, config.rl2, config.gamma, config.gae_lambda, generator
        )
        if i >= warmup:
            rows.append((sampled - tick, time.perf_counter() - sampled, trials.num_steps))
    return _summary("metarl RL2 (GRU)", rows)


def measure_sb3(config: TrainConfig, rounds: int, warmup: int) -> dict:
    """The same batch with sb3-contrib's RecurrentPPO over TrialWrapper envs."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    rl2 = config.rl2
    num_envs = config.meta_batch_size * config.episodes_per_task
    env_kwargs = dict(config.env_kwargs)

    def make() -> gym.Env:
        return TrialWrapper(gym.make(config.env, **env_kwargs), rl2.episodes_per_trial)

    venv = DummyVecEnv([make] * num_envs)
    horizon = int(venv.envs[0].unwrapped.horizon)
    n_steps = rl2.episodes_per_trial * horizon
    model = RecurrentPPO(
        "MlpLstmPolicy",
        venv,
        learning_rate=rl2.lr,
        n_steps=n_steps,
        batch_size=n_steps * num_envs // rl2.minibatches,
        n_epochs=rl2.epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=rl2.clip,
        ent_coef=rl2.entropy_coef,
        vf_coef=rl2.value_coef,
        max_grad_norm=rl2.max_grad_norm if rl2.max_grad_norm is not None else 1e10,
        policy_kwargs={"lstm_hidden_size": rl2.hidden_size, "n_lstm_layers": 1, "net_arch": []},
        seed=config.seed,
        device="cpu",
    )
    _, callback = model._setup_learn(total_timesteps=(warmup + rounds) * n_steps * num_envs, callback=None)
    callback.on_training_start(locals(), globals())
    rows = []
    for i in range(warmup + rounds):
        tick = time.perf_counter()
        model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n_steps)
        sampled = time.perf_counter()
        model.train()
        if i >= warmup:
            rows.append((sampled - tick, time.perf_counter() - sampled, n_steps * num_envs))
    venv.close()
    return _summary("sb3-contrib RecurrentPPO (LSTM)", rows)


def _summary(name: str, rows: list[tuple[float, float, int]]) -> dict:
    sampling = statistics.median(r[0] for r in rows)
    update = statistics.median(r[1] for r in rows)
    steps = statistics.median(r[2] for r in rows)
    return {
        "implementation": name,
        "sampling_seconds": sampling,
        "update_seconds": update,
        "env_steps_per_round": steps,
        "sampling_steps_per_s": steps / sampling,
        "update_steps_per_s": steps / update,
        "round_steps_per_s": steps / (sampling + update),
        "rounds_measured": len(rows),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 trials of 2 episodes of 20 steps, 1 round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per implementation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--system-malloc", action="store_true", help="do not keep freed memory for reuse")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    kept = False if args.system_malloc else keep_freed_memory()
    overrides = [*QUICK] if args.quick else []
    config = load_config(TrainConfig, config_file(CONFIG), [*overrides, f"torch_threads={args.threads}"])
    rounds, warmup = (1, 0) if args.quick else (args.rounds, 1)
    results = [measure_metarl(config, rounds, warmup), measure_sb3(config, rounds, warmup)]
    ours, theirs = results
    speedup = {
        "sampling": ours["sampling_steps_per_s"] / theirs["sampling_steps_per_s"],
        "update": ours["update_steps_per_s"] / theirs["update_steps_per_s"],
        "round": ours["round_steps_per_s"] / theirs["round_steps_per_s"],
    }
    trials = config.meta_batch_size * config.episodes_per_task
    env = {
        "config": CONFIG,
        "overrides": overrides,
        "parallel_trials": trials,
        "episodes_per_trial": config.rl2.episodes_per_trial,
        "hidden_size": config.rl2.hidden_size,
        "epochs": config.rl2.epochs,
        "minibatches": config.rl2.minibatches,
        "torch_threads": args.threads,
        "freed_memory_kept": kept,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(
        f"RL^2 on {config.env}: {trials} parallel trials x {config.rl2.episodes_per_trial} episodes, hidden "
        f"{config.rl2.hidden_size}, {config.rl2.epochs} epochs x {config.rl2.minibatches} minibatches, "
        f"{args.threads} torch thread(s), load average {env['load_average_1min']:.1f} on {env['cpus']} CPUs; "
        f"median of {rounds} round(s); freed memory kept: {'yes' if kept else 'no'}"
    )
    header = (
        f"{'implementation':<34} {'sampling s':>10} {'update s':>9} {'sampling steps/s':>17} "
        f"{'update steps/s':>15} {'round steps/s':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['implementation']:<34} {r['sampling_seconds']:>10.3f} {r['update_seconds']:>9.3f} "
            f"{r['sampling_steps_per_s']:>17,.0f} {r['update_steps_per_s']:>15,.0f} {r['round_steps_per_s']:>14,.0f}"
        )
    print(
        f"{'speedup (metarl / sb3-contrib)':<34} {'':>10} {'':>9} {speedup['sampling']:>16.1f}x "
        f"{speedup['update']:>14.1f}x {speedup['round']:>13.1f}x"
    )
    if args.json:
        write_json_atomic(args.json, {"environment": env, "results": results, "speedup": speedup})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

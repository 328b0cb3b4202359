"""Reptile with policy-gradient inner loops (Nichol, Achiam, Schulman 2018, applied to RL).

One meta-iteration: every task of the meta-batch starts from theta and takes ``inner.steps`` policy-gradient
steps (VPG or PPO-clip, SGD or Adam, each on fresh episodes; all tasks at once on stacked parameters), then
``theta <- theta + eps * (mean_i(phi_i) - theta)`` with ``eps`` annealed linearly from ``reptile.step_size``
to ``reptile.final_step_size``. Evaluation fine-tunes with the same inner loop as MAML (``inner`` section).

Example::

    from metarl.agents import ReptilePG, TrainConfig
    from metarl.agents.config import InnerConfig

    config = TrainConfig(algo="reptile", iterations=200, inner=InnerConfig(steps=3, lr=0.1))
    agent = ReptilePG(config)
    agent.train("runs/my-reptile")
"""

from __future__ import annotations

import time

from metarl.agents.agent import GradientMetaRLAgent, adaptation_metrics
from metarl.agents.config import TrainConfig
from metarl.agents.inner import FineTuner
from metarl.agents.policies import task_slice
from metarl.agents.streams import TRAIN_STREAM, stream_rng, torch_generator
from metarl.core import linear_anneal, load_params_, reptile_update, stack_over_tasks
from metarl.envs import sample_tasks


class ReptilePG(GradientMetaRLAgent):
    """Reptile on policies: move the initialisation toward the policies fine-tuned on each task.

    Args:
        config: the run configuration (``algo`` must be ``"reptile"``).
    """

    algo = "reptile"

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(config)
        self.fine_tuner = FineTuner(self.policy, self.config.inner, self.config.gamma, self.config.gae_lambda)

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        cfg = self.config
        rng = stream_rng(cfg.seed, TRAIN_STREAM, iteration)
        generator = torch_generator(rng)
        tasks = sample_tasks(self.sampler.env, cfg.meta_batch_size, int(rng.integers(2**31)))
        theta = {n: p.detach() for n, p in self.policy.params().items()}
        tick = time.perf_counter()
        result = self.fine_tuner.run(
            stack_over_tasks(theta, cfg.meta_batch_size, copy=True),
            tasks,
            self.sampler,
            rng,
            generator,
            steps=cfg.inner.steps,
        )
        step_size = linear_anneal(
            cfg.reptile.step_size, iteration, cfg.iterations, cfg.reptile.final_step_size
        )
        adapted = [task_slice(result.params, i) for i in range(cfg.meta_batch_size)]
        new_theta = reptile_update(theta, adapted, step_size)
        distance = sum(((new_theta[n] - theta[n]) ** 2).sum() for n in theta) ** 0.5
        load_params_(self.policy, new_theta)
        metrics = adaptation_metrics("return", result.returns.mean(0).tolist())
        if result.successes is not None:
            metrics.update(adaptation_metrics("success", result.successes.mean(0).tolist()))
        metrics.update(
            {
                "losses/reptile_step_size": step_size,
                "losses/meta_update_norm": float(distance),
                "charts/seconds_inner_loop": time.perf_counter() - tick,
                "env_steps": result.env_steps,
            }
        )
        return metrics

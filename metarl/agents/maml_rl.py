"""MAML-TRPO (Finn, Abbeel, Levine 2017): meta-learn a policy that adapts with one policy-gradient step.

One meta-iteration, for ``meta_batch_size`` tasks at once (stacked per-task parameters, no loop over tasks):

1. sample ``episodes_per_task`` episodes per task with theta; fit a linear baseline per task; take ``k`` VPG
   steps ``phi = theta - lr * grad L_inner`` (new episodes before every further step);
2. sample episodes with the adapted ``phi``;
3. TRPO on the post-adaptation surrogate ``-E[pi_phi(theta)(a|s) / pi_old(a|s) * A]`` with the KL between the
   old and new post-adaptation policies, both differentiated through the adaptation (second order unless
   ``inner.first_order``; Meta-SGD learns the inner rates when ``inner.meta_sgd``).

With ``inner.steps=0`` this is plain TRPO on the task mixture (the ``pretrained`` baseline). The inner steps and
the products with their Jacobian live in :mod:`metarl.agents.adaptation_jacobian`, computed with autograd or, for
Gaussian MLP policies, in closed form (``inner.curvature``), as chosen once when the agent is built.

Example::

    from metarl.agents import MAMLTRPO, TrainConfig

    agent = MAMLTRPO(TrainConfig(env="MetaRL/Navigation2D-v0", iterations=100, seed=1))
    history = agent.train("runs/my-maml")          # config, checkpoints, metrics.jsonl, TensorBoard
    print(history[-1]["meta/return_after_step1"])
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from metarl.agents.adaptation_jacobian import Adaptation, adaptation_for
from metarl.agents.agent import GradientMetaRLAgent, adaptation_metrics
from metarl.agents.baseline import LinearFeatureBaseline
from metarl.agents.config import TrainConfig
from metarl.agents.curvature import choose_derivatives
from metarl.agents.episodes import Episodes, masked_task_mean
from metarl.agents.inner import compute_advantages
from metarl.agents.streams import TRAIN_STREAM, stream_rng, torch_generator
from metarl.agents.trpo import TRPOResult, mean_kl_curvature, output_space_kl_hvp, trpo_step
from metarl.core import Params
from metarl.envs import sample_tasks


@dataclass
class SampledRound:
    """One sampling round of a meta-iteration.

    Attributes:
        episodes: the episodes of every task.
        advantages: their advantages ``(T, E, H)``.
        params: the per-task parameters that sampled them (detached, stacked by task).
    """

    episodes: Episodes
    advantages: torch.Tensor
    params: Params


@dataclass
class MetaBatch:
    """What the MAML family's outer step works on: the meta-iteration's adaptation and its episodes.

    Attributes:
        adaptation: the inner steps taken from the current meta-parameters (:mod:`adaptation_jacobian`).
        inner_rounds: the round before each inner step, in order.
        post: the round sampled with the adapted parameters.
        returns: mean return before and after each inner step.
        env_steps: environment steps taken.
        successes: per-task success rates before and after each inner step (None for envs without success).
    """

    adaptation: Adaptation
    inner_rounds: list[SampledRound]
    post: SampledRound
    returns: list[float]
    env_steps: int
    successes: list[torch.Tensor | None]

    def success_metrics(self) -> dict[str, float]:
        """``meta/success_before`` and ``meta/success_after_step<k>`` where the env reports success."""
        if self.successes[0] is None:
            return {}
        return adaptation_metrics("success", [rate.mean().item() for rate in self.successes])


class MAMLAgent(GradientMetaRLAgent):
    """What MAML-TRPO and ProMP share: each meta-iteration samples with the meta-parameters, takes
    ``inner.steps`` inner steps through :mod:`metarl.agents.adaptation_jacobian` (fresh episodes before each),
    and samples with the adapted parameters (:meth:`sample_and_adapt`); subclasses take the outer step.

    Args:
        config: the run configuration.

    Raises:
        UserError: ``inner.curvature=closed_form`` for a policy without closed-form derivatives.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        super().__init__(config)
        self.baseline = LinearFeatureBaseline()
        # Chosen once for the run: the inner loop's form (inner.steps) and derivatives (inner.curvature).
        self.derivatives = choose_derivatives(self.policy, self.config.inner)
        self.make_adaptation = adaptation_for(self.policy, self.config.inner, self.derivatives)

    def sample_and_adapt(self, iteration: int, clock: Stopwatch) -> MetaBatch:
        """Steps 1 and 2 of a meta-iteration: adapt every task of the meta-batch and sample with the result."""
        cfg = self.config
        rng = stream_rng(cfg.seed, TRAIN_STREAM, iteration)
        generator = torch_generator(rng)
        tasks = sample_tasks(self.sampler.env, cfg.meta_batch_size, int(rng.integers(2**31)))
        adaptation = self.make_adaptation(self._theta(), self.adaptation_lr(), cfg.meta_batch_size)
        rounds, returns, successes, env_steps = [], [], [], 0
        for _ in range(cfg.inner.steps):  # 1. adapt: sample with the current parameters, take a VPG step
            params = adaptation.params
            with clock("sampling"):
                episodes = self.sampler.sample(params, tasks, int(rng.integers(2**31)), generator)
            with clock("adaptation"):
                advantages = self._advantages(episodes, cfg.inner.normalize_advantages)
                adaptation.step(episodes, advantages)
            rounds.append(SampledRound(episodes, advantages, params))
            returns.append(episodes.task_returns().mean().item())
            successes.append(episodes.task_success_rates())
            env_steps += episodes.num_steps
        with clock("sampling"):  # 2. sample with the adapted parameters
            post = self.sampler.sample(adaptation.params, tasks, int(rng.integers(2**31)), generator)
            # The last round of the iteration: free the engine before the outer step. Its copies (450 MB for
            # HalfCheetahVel's 800) left in the heap made the outer step's large tensors page-fault 5x as often
            # (TRPO 3.6 -> 5.4 s, BENCHMARKS.md); the next iteration's first round builds it again.
            self.sampler.release_engine()
        with clock("adaptation"):
            post_advantages = self._advantages(post)
        returns.append(post.task_returns().mean().item())
        successes.append(post.task_success_rates())
        env_steps += post.num_steps
        return MetaBatch(
            adaptation,
            rounds,
            SampledRound(post, post_advantages, adaptation.params),
            returns,
            env_steps,
            successes,
        )

    def _theta(self) -> Params:
        return {n: p.detach() for n, p in self.policy.params().items()}

    def _meta_parameters(self) -> list[torch.Tensor]:
        """What the outer step trains, in the order of the adaptation's Jacobian: the policy's parameters, then
        Meta-SGD's rates."""
        rates = [] if self.learning_rates is None else list(self.learning_rates.parameters())
        return [*self.policy.params().values(), *rates]

    def _advantages(self, episodes: Episodes, normalize: bool = True) -> torch.Tensor:
        return compute_advantages(
            episodes, self.config.gamma, self.config.gae_lambda, self.baseline, normalize
        )


class MAMLTRPO(MAMLAgent):
    """Model-agnostic meta-learning with a VPG inner loop and a TRPO outer loop.

    Args:
        config: the run configuration (``algo`` must be ``"maml-trpo"``).

    Raises:
        UserError: ``inner.curvature=closed_form`` for a policy without closed-form derivatives.
    """

    algo = "maml-trpo"

    def meta_iteration(self, iteration: int) -> dict[str, float]:
        clock = Stopwatch()
        batch = self.sample_and_adapt(iteration, clock)
        with clock("trpo"):  # 3. TRPO on the post-adaptation surrogate, through the adaptation
            result = self._trpo_step(batch.adaptation, batch.post.episodes, batch.post.advantages)
        return {
            **self._metrics(batch.returns, result, clock.seconds, batch.env_steps),
            **batch.success_metrics(),
        }

    def _trpo_step(self, adaptation: Adaptation, post: Episodes, advantages: torch.Tensor) -> TRPOResult:
        """TRPO on the surrogate ``-E[pi_phi(theta)(a|s) / pi_old(a|s) * A]`` with the mean KL between the old and
        new post-adaptation policies as its trust region, both differentiated through the adaptation."""
        policy = self.policy
        jacobian = adaptation.jacobian(post.observations)
        old_outputs = jacobian.outputs
        old_log_probs = policy.distribution_from(old_outputs).log_prob(post.actions)

        def surrogate(outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
            ratio = torch.exp(policy.distribution_from(outputs).log_prob(post.actions) - old_log_probs)
            return -masked_task_mean(ratio * advantages, post.mask).mean()

        def mean_kl(outputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
            return masked_task_mean(policy.kl(old_outputs, outputs), post.mask).mean()

        def line_search_point() -> tuple[float, float]:  # at the meta-parameters trpo_step is trying
            with torch.no_grad():
                phi = adaptation.adapted_values(self._theta(), self.adaptation_lr())
                outputs = policy.distribution_parameters(post.observations, phi)
                return float(surrogate(outputs)), float(mean_kl(outputs))

        leaves = tuple(o.detach().requires_grad_(True) for o in old_outputs)
        with torch.enable_grad():
            loss = surrogate(leaves)
            output_grads = torch.autograd.grad(loss, leaves)
        t = self.config.trpo
        return trpo_step(
            self._meta_parameters(),
            float(loss.detach()),
            jacobian.vjp(output_grads),
            output_space_kl_hvp(jacobian, mean_kl, mean_kl_curvature(policy, old_outputs, post.mask)),
            line_search_point,
            max_kl=t.max_kl,
            cg_iterations=t.cg_iterations,
            cg_damping=t.cg_damping,
            line_search_steps=t.line_search_steps,
            line_search_ratio=t.line_search_ratio,
        )

    def _metrics(
        self, returns: list[float], result: TRPOResult, seconds: dict[str, float], env_steps: int
    ) -> dict[str, float]:
        metrics = adaptation_metrics("return", returns)
        metrics.update(
            {
                "losses/surrogate_before": result.loss_before,
                "losses/surrogate_after": result.loss_after,
                "losses/kl": result.kl,
                "losses/grad_norm": result.grad_norm,
                "losses/step_fraction": result.step_fraction,
                "losses/step_accepted": float(result.accepted),
                "charts/seconds_sampling": seconds["sampling"],
                "charts/seconds_adaptation": seconds["adaptation"],
                "charts/seconds_trpo": seconds["trpo"],
                "env_steps": env_steps,
            }
        )
        if self.learning_rates is not None:
            rates = torch.cat([r.detach().reshape(-1) for r in self.learning_rates.parameters()])
            metrics["losses/meta_sgd_mean_lr"] = rates.mean().item()
        return metrics


class Stopwatch:
    """Wall-clock seconds spent in each phase of an iteration: ``with clock("sampling"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        tick = time.perf_counter()
        yield
        self.seconds[phase] += time.perf_counter() - tick

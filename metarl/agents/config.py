"""The configuration of a meta-RL run (one schema for MAML-TRPO and Reptile-PG).

Reference configs live in ``configs/<algo>/<env-name>.yaml`` (``algo`` = ``maml-trpo`` or ``reptile``;
``<env-name>`` is free, e.g. ``navigation2d``, ``bandit-k5``, ``halfcheetah-vel``). A file sets any subset of
the keys below; ``metarl train --algo A --env ID`` without ``--config`` picks the file of ``configs/A/`` whose
``env:`` equals ``ID`` (and has no ``env_kwargs``; of a reference and its variants, such as
``navigation2d.yaml`` and ``navigation2d-paper.yaml``, the shorter name). ``key=value`` overrides go on top
(``inner.lr=0.05``, ``policy.hidden_sizes=[64,64]``). Print the whole schema with ``metarl train --help-config``.
Example (``configs/maml-trpo/navigation2d.yaml``)::

    algo: maml-trpo
    env: MetaRL/Navigation2D-v0
    iterations: 500
    meta_batch_size: 20
    episodes_per_task: 20
    policy: {hidden_sizes: [100, 100], activation: tanh}
    inner: {steps: 1, lr: 0.1}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

InnerObjective = Literal["log_likelihood", "likelihood_ratio", "dice"]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"config key '{name}' must be positive, got {value}")


@dataclass
class PolicyConfig:
    """The policy network (Gaussian MLP for Box actions, categorical MLP for Discrete actions)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64], metadata=_help("hidden layer widths"))
    activation: Literal["tanh", "relu"] = field(default="tanh", metadata=_help("hidden activation"))
    init_std: float = field(default=1.0, metadata=_help("initial action std of a Gaussian policy"))
    min_std: float = field(default=1e-6, metadata=_help("floor of a Gaussian policy's action std"))
    normalized_actions: bool = field(
        default=True,
        metadata=_help(
            "Gaussian policy acts in [-1, 1] per dimension, mapped linearly onto the env's bounded action box "
            "(rllab's normalize, as in the MAML paper); false: raw actions, clipped by the env"
        ),
    )

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(
                f"config key 'policy.hidden_sizes' must be positive widths, got {self.hidden_sizes}"
            )
        _positive("policy.init_std", self.init_std)
        if not 0 < self.min_std <= self.init_std:
            raise ValueError(
                f"config key 'policy.min_std' must be in (0, policy.init_std], got {self.min_std}"
            )


@dataclass
class InnerConfig:
    """The inner loop: how a policy adapts to one task (also the fine-tuning of every learner at evaluation)."""

    steps: int = field(default=1, metadata=_help("adaptation steps per task during meta-training (k)"))
    lr: float = field(default=0.1, metadata=_help("inner learning rate"))
    algorithm: Literal["vpg", "ppo"] = field(
        default="vpg", metadata=_help("inner policy-gradient loss (MAML needs vpg)")
    )
    optimizer: Literal["sgd", "adam"] = field(
        default="sgd", metadata=_help("inner optimizer (MAML needs sgd; Reptile may use adam)")
    )
    first_order: bool = field(default=False, metadata=_help("MAML: drop second-order terms (FOMAML)"))
    objective: InnerObjective = field(
        default="log_likelihood",
        metadata=_help(
            "MAML's inner loss: log_likelihood (-A log pi, MAML-TRPO) or likelihood_ratio (-A pi/stop_grad(pi), "
            "ProMP's low-variance curvature: the same step, a meta-gradient that credits pre-update exploration) "
            "or dice (Loaded DiCE: also credits how earlier actions shape later states, see inner.dice_lambda)"
        ),
    )
    dice_lambda: float = field(
        default=1.0,
        metadata=_help(
            "objective=dice: discount in [0, 1] of the credit an action gets for later steps' advantages "
            "(1: DiCE's unbiased curvature, 0: the same as likelihood_ratio)"
        ),
    )
    meta_sgd: bool = field(default=False, metadata=_help("MAML: learn per-parameter inner rates (Meta-SGD)"))
    curvature: Literal["auto", "closed_form", "autograd"] = field(
        default="auto",
        metadata=_help(
            "MAML-TRPO: how the inner step's gradients, Hessian and Jacobian products are computed: closed_form "
            "(Gaussian MLP policies with tanh or relu layers; several times faster), autograd (every policy; the "
            "reference) or auto (closed_form where the policy has it, else autograd)"
        ),
    )
    normalize_advantages: bool = field(
        default=True,
        metadata=_help(
            "standardise each task's advantages before a step (rllab's center_adv, as in the MAML paper); "
            "false: raw GAE advantages, so the step's size follows the task's reward scale"
        ),
    )
    ppo_clip: float = field(default=0.2, metadata=_help("PPO clip range when algorithm=ppo"))
    ppo_epochs: int = field(
        default=4, metadata=_help("PPO gradient epochs per inner step when algorithm=ppo")
    )

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"config key 'inner.steps' must be >= 0, got {self.steps}")
        _positive("inner.lr", self.lr)
        if not 0.0 <= self.dice_lambda <= 1.0:
            raise ValueError(f"config key 'inner.dice_lambda' must be in [0, 1], got {self.dice_lambda}")
        _positive("inner.ppo_clip", self.ppo_clip)
        if self.ppo_epochs < 1:
            raise ValueError(f"config key 'inner.ppo_epochs' must be >= 1, got {self.ppo_epochs}")
        if self.meta_sgd and self.steps < 1:
            raise ValueError(
                "config key 'inner.meta_sgd' needs inner.steps >= 1: the rates are those of the steps"
            )


@dataclass
class TRPOConfig:
    """The outer TRPO step of MAML-TRPO (and of the pretrained / oracle baselines)."""

    max_kl: float = field(default=0.01, metadata=_help("trust-region radius on the mean KL"))
    cg_iterations: int = field(default=10, metadata=_help("conjugate-gradient iterations"))
    cg_damping: float = field(default=1e-5, metadata=_help("damping of the Fisher-vector product"))
    line_search_steps: int = field(default=15, metadata=_help("backtracking steps"))
    line_search_ratio: float = field(default=0.8, metadata=_help("backtracking shrink factor"))

    def __post_init__(self) -> None:
        _positive("trpo.max_kl", self.max_kl)
        if self.cg_iterations < 1 or self.line_search_steps < 1:
            raise ValueError("config keys 'trpo.cg_iterations' and 'trpo.line_search_steps' must be >= 1")
        if not 0 < self.line_search_ratio < 1:
            raise ValueError(
                f"config key 'trpo.line_search_ratio' must be in (0, 1), got {self.line_search_ratio}"
            )


@dataclass
class ReptileConfig:
    """The Reptile outer update theta <- theta + eps * (mean(phi) - theta)."""

    step_size: float = field(default=1.0, metadata=_help("outer step size eps at the first iteration"))
    final_step_size: float = field(default=0.0, metadata=_help("eps at the last iteration (linear anneal)"))

    def __post_init__(self) -> None:
        _positive("reptile.step_size", self.step_size)
        if self.final_step_size < 0:
            raise ValueError(f"config key 'reptile.final_step_size' must be >= 0, got {self.final_step_size}")


@dataclass
class EvalConfig:
    """`metarl evaluate`: held-out tasks and the baselines fine-tuned next to the meta-learner."""

    tasks: int = field(default=40, metadata=_help("held-out tasks"))
    adapt_steps: int = field(default=3, metadata=_help("fine-tuning steps (returns after 0..k steps)"))
    baselines: list[Literal["pretrained", "random-init", "oracle"]] = field(
        default_factory=lambda: ["pretrained", "random-init", "oracle"],
        metadata=_help("baselines to evaluate (oracle only where the env has task features)"),
    )
    baseline_iterations: int | None = field(
        default=None,
        metadata=_help("TRPO iterations of the pretrained/oracle policies (null: the run's meta-iterations)"),
    )
    episodes_per_task: int | None = field(
        default=None,
        metadata=_help(
            "episodes per fine-tuning step on a held-out task (null: the training's episodes_per_task; "
            "the MAML paper's 2D-navigation test used 40, twice its training batch)"
        ),
    )
    later_steps_lr_scale: float = field(
        default=1.0,
        metadata=_help(
            "multiplies the fine-tuning step size after the first step (the MAML paper's 2D-navigation test: "
            "0.5, i.e. lr 0.5 then 0.25)"
        ),
    )

    def __post_init__(self) -> None:
        _positive("evaluation.later_steps_lr_scale", self.later_steps_lr_scale)
        if self.episodes_per_task is not None and self.episodes_per_task < 1:
            raise ValueError(
                f"config key 'evaluation.episodes_per_task' must be >= 1 or null, got {self.episodes_per_task}"
            )
        if self.tasks < 2:
            raise ValueError(f"config key 'evaluation.tasks' must be >= 2 (for a CI), got {self.tasks}")
        if self.adapt_steps < 0:
            raise ValueError(f"config key 'evaluation.adapt_steps' must be >= 0, got {self.adapt_steps}")


@dataclass
class TrainConfig:
    """A meta-RL run: algorithm, task distribution, budget and every hyperparameter."""

    algo: Literal["maml-trpo", "reptile"] = field(default="maml-trpo", metadata=_help("meta-learner"))
    env: str = field(default="MetaRL/Navigation2D-v0", metadata=_help("registered task-distribution id"))
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata=_help("env constructor arguments"))
    seed: int = field(default=0, metadata=_help("seed of everything (tasks, env copies, action noise, init)"))
    iterations: int = field(default=500, metadata=_help("meta-iterations"))
    meta_batch_size: int = field(default=20, metadata=_help("tasks per meta-iteration"))
    episodes_per_task: int = field(default=20, metadata=_help("episodes per task per sampling round"))
    gamma: float = field(default=0.99, metadata=_help("discount factor"))
    gae_lambda: float = field(default=1.0, metadata=_help("GAE lambda (1.0 = returns minus baseline)"))
    oracle: bool = field(default=False, metadata=_help("append the task features to the observation"))
    time_limit_seconds: float | None = field(
        default=None,
        metadata=_help(
            "stop training (after at least one iteration) once this wall-clock time is used; null = no limit"
        ),
    )
    checkpoint_every: int = field(default=1, metadata=_help("iterations between checkpoints"))
    torch_threads: int | None = field(default=None, metadata=_help("torch.set_num_threads (null: leave)"))
    policy: PolicyConfig = field(default_factory=PolicyConfig, metadata=_help("policy network"))
    inner: InnerConfig = field(default_factory=InnerConfig, metadata=_help("inner loop / fine-tuning"))
    trpo: TRPOConfig = field(default_factory=TRPOConfig, metadata=_help("outer TRPO step"))
    reptile: ReptileConfig = field(default_factory=ReptileConfig, metadata=_help("Reptile outer update"))
    evaluation: EvalConfig = field(default_factory=EvalConfig, metadata=_help("evaluation protocol"))

    def __post_init__(self) -> None:
        for name in ("iterations", "meta_batch_size", "episodes_per_task", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"config key '{name}' must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"config key 'gamma' must be in (0, 1], got {self.gamma}")
        if not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"config key 'gae_lambda' must be in [0, 1], got {self.gae_lambda}")
        if self.seed < 0:
            raise ValueError(f"config key 'seed' must be >= 0, got {self.seed}")
        if self.algo == "maml-trpo" and (self.inner.algorithm != "vpg" or self.inner.optimizer != "sgd"):
            raise ValueError(
                "maml-trpo differentiates through a plain gradient step: set inner.algorithm=vpg and "
                "inner.optimizer=sgd (ppo/adam inner loops are for algo=reptile)"
            )
        if self.algo == "reptile" and self.inner.steps < 1:
            raise ValueError("config key 'inner.steps' must be >= 1 for reptile")

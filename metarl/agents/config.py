"""The configuration of a meta-RL run (one schema for every meta-RL agent).

Reference configs ship inside the package as ``metarl/configs/<algo>/<env-name>.yaml`` (``algo`` =
``maml-trpo``, ``promp``, ``maml-ppo``, ``reptile``, ``rl2``, ``pearl``, ``es-maml`` or ``openai-es``; ``<env-name>`` is free, e.g. ``navigation2d``, ``bandit-k5``, ``halfcheetah-vel``;
``--config maml-trpo/navigation2d`` names one). A file sets any subset of the keys below; ``metarl train --algo
A --env ID`` without ``--config`` picks the shipped file of ``A`` whose
``env:`` equals ``ID`` (and has no ``env_kwargs``; of a reference and its variants, such as
``navigation2d.yaml`` and ``navigation2d-paper.yaml``, the shorter name). ``key=value`` overrides go on top
(``inner.lr=0.05``, ``policy.hidden_sizes=[64,64]``). Print the whole schema with ``metarl train --help-config``.
Example (``maml-trpo/navigation2d``)::

    algo: maml-trpo
    env: MetaRL/Navigation2D-v0
    iterations: 500
    meta_batch_size: 20
    episodes_per_task: 20
    policy: {hidden_sizes: [100, 100], activation: tanh}
    inner: {steps: 1, lr: 0.1}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from metarl.errors import UserError
from metarl.training.config import check_declared_bounds, doc, run_field

InnerObjective = Literal["log_likelihood", "likelihood_ratio", "dice"]


MAML_FAMILY = ("maml-trpo", "promp", "maml-ppo")  # the algorithms that differentiate through the inner step

# Bounds that stop a value from hanging a run or exhausting memory long before any real experiment needs them.
MAX_WIDTH = 65_536  # units of a hidden layer
MAX_STEPS = 10_000  # inner steps, fine-tuning steps, PPO epochs, CG iterations, line-search steps
MAX_TASKS = 100_000  # held-out tasks
MAX_EPISODES = 100_000  # episodes per task and round
MAX_ENV_COPIES = 1_000_000  # env copies stepped together in one sampling round
MAX_WORKERS = 10_000  # Ray actors of a distributed sampler


@dataclass
class PolicyConfig:
    """The policy network (Gaussian MLP for Box actions, categorical MLP for Discrete actions)."""

    hidden_sizes: list[int] = doc(
        "hidden layer widths", default_factory=lambda: [64, 64], minimum=1, maximum=MAX_WIDTH
    )
    activation: Literal["tanh", "relu"] = doc("hidden activation", default="tanh")
    init_std: float = doc("initial action std of a Gaussian policy", default=1.0, above=0)
    min_std: float = doc("floor of a Gaussian policy's action std (<= init_std)", default=1e-6, above=0)
    normalized_actions: bool = doc(
        "Gaussian policy acts in [-1, 1] per dimension, mapped linearly onto the env's bounded action box "
        "(rllab's normalize, as in the MAML paper); false: raw actions, clipped by the env",
        default=True,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "policy.")
        if not self.hidden_sizes:
            raise UserError("config key 'policy.hidden_sizes' must list at least one width, got []")
        if self.min_std > self.init_std:
            raise UserError(
                f"config key 'policy.min_std' must be in (0, policy.init_std], got {self.min_std}"
            )


@dataclass
class InnerConfig:
    """The inner loop: how a policy adapts to one task (also the fine-tuning of every learner at evaluation)."""

    steps: int = doc(
        "adaptation steps per task during meta-training (k)", default=1, minimum=0, maximum=MAX_STEPS
    )
    lr: float = doc("inner learning rate", default=0.1, above=0)
    algorithm: Literal["vpg", "ppo"] = doc("inner policy-gradient loss (MAML needs vpg)", default="vpg")
    optimizer: Literal["sgd", "adam"] = doc(
        "inner optimizer (MAML needs sgd; Reptile may use adam)", default="sgd"
    )
    first_order: bool = doc("MAML: drop second-order terms (FOMAML)", default=False)
    objective: InnerObjective = doc(
        "MAML's inner loss: log_likelihood (-A log pi, MAML-TRPO) or likelihood_ratio (-A pi/stop_grad(pi), "
        "ProMP's low-variance curvature: the same step, a meta-gradient that credits pre-update exploration) "
        "or dice (Loaded DiCE: also credits how earlier actions shape later states, see inner.dice_lambda)",
        default="log_likelihood",
    )
    dice_lambda: float = doc(
        "objective=dice: discount in [0, 1] of the credit an action gets for later steps' advantages "
        "(1: DiCE's unbiased curvature, 0: the same as likelihood_ratio)",
        default=1.0,
        minimum=0,
        maximum=1,
    )
    meta_sgd: bool = doc("MAML: learn per-parameter inner rates (Meta-SGD)", default=False)
    curvature: Literal["auto", "closed_form", "autograd"] = doc(
        "MAML-TRPO: how the inner step's gradients, Hessian and Jacobian products are computed: closed_form "
        "(Gaussian MLP policies with tanh or relu layers; several times faster), autograd (every policy; the "
        "reference) or auto (closed_form where the policy has it, else autograd)",
        default="auto",
    )
    normalize_advantages: bool = doc(
        "standardise each task's advantages before a step (rllab's center_adv, as in the MAML paper); "
        "false: raw GAE advantages, so the step's size follows the task's reward scale",
        default=True,
    )
    ppo_clip: float = doc("PPO clip range when algorithm=ppo", default=0.2, above=0)
    ppo_epochs: int = doc(
        "PPO gradient epochs per inner step when algorithm=ppo", default=4, minimum=1, maximum=MAX_STEPS
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "inner.")
        if self.meta_sgd and self.steps < 1:
            raise UserError(
                "config key 'inner.meta_sgd' needs inner.steps >= 1: the rates are those of the steps"
            )


@dataclass
class TRPOConfig:
    """The outer TRPO step of MAML-TRPO (and of the pretrained / oracle baselines)."""

    max_kl: float = doc("trust-region radius on the mean KL", default=0.01, above=0)
    cg_iterations: int = doc("conjugate-gradient iterations", default=10, minimum=1, maximum=MAX_STEPS)
    cg_damping: float = doc("damping of the Fisher-vector product", default=1e-5, minimum=0)
    line_search_steps: int = doc("backtracking steps", default=15, minimum=1, maximum=MAX_STEPS)
    line_search_ratio: float = doc("backtracking shrink factor, in (0, 1)", default=0.8, above=0)

    def __post_init__(self) -> None:
        check_declared_bounds(self, "trpo.")
        if not self.line_search_ratio < 1:
            raise UserError(
                f"config key 'trpo.line_search_ratio' must be in (0, 1), got {self.line_search_ratio}"
            )


@dataclass
class ReptileConfig:
    """The Reptile outer update theta <- theta + eps * (mean(phi) - theta)."""

    step_size: float = doc("outer step size eps at the first iteration", default=1.0, above=0)
    final_step_size: float = doc("eps at the last iteration (linear anneal)", default=0.0, minimum=0)

    def __post_init__(self) -> None:
        check_declared_bounds(self, "reptile.")


@dataclass
class ProMPConfig:
    """The outer step of ProMP and MAML-PPO (Rothfuss et al. 2019; defaults: the reference run scripts)."""

    ppo_steps: int = doc(
        "Adam steps on the clipped post-adaptation objective per meta-iteration, all on the same episodes "
        "(num_promp_steps)",
        default=5,
        minimum=1,
        maximum=MAX_STEPS,
    )
    clip_eps: float = doc("PPO clip range of the likelihood ratio", default=0.3, above=0, maximum=1)
    learning_rate: float = doc("Adam step size of the meta-parameters", default=1e-3, above=0)
    init_inner_kl_penalty: float = doc(
        "ProMP: initial coefficient of each inner step's KL(pre-update policy that sampled || new pre-update "
        "policy) in the objective (maml-ppo: no KL term)",
        default=5e-4,
        minimum=0,
    )
    adaptive_inner_kl_penalty: bool = doc(
        "ProMP: after each meta-iteration halve a KL coefficient whose KL is below target_inner_step / 1.5 "
        "and double it above target_inner_step * 1.5; false: fixed coefficients (the reference run scripts)",
        default=False,
    )
    target_inner_step: float = doc(
        "ProMP: the inner KL the adaptive coefficients aim at", default=0.01, above=0
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "promp.")


@dataclass
class RL2Config:
    """RL^2 (Duan et al. 2016): a GRU policy and value function trained with PPO on trials.

    A trial is ``episodes_per_trial`` episodes of one task with the GRU's memory kept across them; for
    ``algo: rl2`` the run's ``meta_batch_size`` is the tasks per iteration and ``episodes_per_task`` the trials
    played per task (each a separate env copy), so an iteration has ``meta_batch_size x episodes_per_task``
    trials. ``gamma`` and ``gae_lambda`` apply over the whole trial; ``policy.init_std``, ``policy.min_std`` and
    ``policy.normalized_actions`` shape the Gaussian head (``policy.hidden_sizes`` and ``activation`` are the MLP
    agents' and are not read).
    """

    episodes_per_trial: int = doc(
        "k: episodes of one task in a trial, the span of the policy's memory",
        default=2,
        minimum=1,
        maximum=MAX_EPISODES,
    )
    hidden_size: int = doc("GRU hidden units (policy and value)", default=128, minimum=1, maximum=MAX_WIDTH)
    shared_gru: bool = doc(
        "one GRU for the policy and the value head; false (default): the value function has its own GRU, so its "
        "loss (scaled by the returns) cannot pull the policy's memory around and value_coef needs no tuning",
        default=False,
    )
    normalize_observations: bool = doc(
        "standardise the continuous inputs of the GRUs (a Box observation or action, the previous reward) by their "
        "running mean and std over the trials seen so far; one-hot encodings of Discrete spaces and the done flag "
        "stay 0/1 (standardised, a rarely taken action would become a large input)",
        default=True,
    )
    lr: float = doc("Adam learning rate", default=1e-3, above=0)
    clip: float = doc("PPO clip range of the probability ratio", default=0.2, above=0)
    epochs: int = doc("PPO epochs over each iteration's trials", default=5, minimum=1, maximum=MAX_STEPS)
    minibatches: int = doc(
        "minibatches per epoch, each of whole trials (at most the iteration's trials)",
        default=4,
        minimum=1,
        maximum=MAX_ENV_COPIES,
    )
    entropy_coef: float = doc("weight of the policy's entropy bonus", default=0.0, minimum=0)
    value_coef: float = doc(
        "weight of the value function's squared error in the loss", default=0.5, minimum=0
    )
    max_grad_norm: float | None = doc(
        "clip the gradient's global norm to this (null: no clipping)", default=0.5, above=0
    )
    normalize_advantages: bool = doc(
        "standardise the advantages over the iteration's trials before the PPO epochs", default=True
    )
    target_kl: float | None = doc(
        "stop an iteration's PPO epochs once a minibatch's approximate KL to the sampling policy exceeds 1.5 x "
        "this (null: always run every epoch)",
        default=None,
        above=0,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "rl2.")


@dataclass
class PEARLConfig:
    """PEARL (Rakelly et al. 2019): SAC on a latent task variable z inferred by a probabilistic context encoder.

    Defaults are oyster's (katerakelly/oyster, configs/default.py), with its transition counts expressed in
    episodes of the env's horizon (oyster collects whole trajectories of max_path_length = 200 until the count
    is reached: 400 steps = 2 episodes).
    """

    train_tasks: int = doc(
        "fixed training tasks, drawn once at the start (oyster n_train_tasks); evaluation uses held-out ones",
        default=100,
        minimum=1,
        maximum=MAX_TASKS,
    )
    latent_size: int = doc("dimension of the task variable z", default=5, minimum=1, maximum=MAX_WIDTH)
    hidden_sizes: list[int] = doc(
        "hidden widths of the policy, both Q networks and the value network (oyster net_size x 3)",
        default_factory=lambda: [300, 300, 300],
        minimum=1,
        maximum=MAX_WIDTH,
    )
    encoder_hidden_sizes: list[int] = doc(
        "hidden widths of the context encoder",
        default_factory=lambda: [200, 200, 200],
        minimum=1,
        maximum=MAX_WIDTH,
    )
    context_next_obs: bool = doc(
        "a context transition is (s, a, r, s') instead of (s, a, r): for tasks that change the dynamics",
        default=False,
    )
    max_path_length: int | None = doc(
        "collected episodes end after this many steps, the last transition bootstrapped like any truncation "
        "(oyster max_path_length: more, shorter episodes per task give the encoder varied context); null: the "
        "env's whole episodes. Evaluation and the logged trials always play whole episodes",
        default=None,
        minimum=1,
    )
    initial_episodes: int = doc(
        "episodes per training task with z ~ prior before the first update (oyster num_initial_steps)",
        default=10,
        minimum=1,
        maximum=MAX_EPISODES,
    )
    tasks_per_iteration: int = doc(
        "training tasks collected on per iteration, drawn without replacement (oyster num_tasks_sample)",
        default=5,
        minimum=1,
        maximum=MAX_TASKS,
    )
    prior_episodes: int = doc(
        "episodes per collected task with z ~ prior, for both buffers (oyster num_steps_prior)",
        default=2,
        minimum=0,
        maximum=MAX_EPISODES,
    )
    posterior_episodes: int = doc(
        "episodes per collected task with z ~ q(z|c), c from the encoder buffer, for both buffers (oyster "
        "num_steps_posterior; the first one uses the prior)",
        default=0,
        minimum=0,
        maximum=MAX_EPISODES,
    )
    extra_posterior_episodes: int = doc(
        "episodes per collected task with z ~ q(z|c) for the RL buffer only (oyster "
        "num_extra_rl_steps_posterior; the first one uses the prior)",
        default=2,
        minimum=0,
        maximum=MAX_EPISODES,
    )
    train_steps: int = doc(
        "gradient steps per iteration (oyster num_train_steps_per_itr)",
        default=2000,
        minimum=1,
        maximum=10**7,
    )
    batch_size: int = doc(
        "transitions per task in the RL batch of a gradient step", default=256, minimum=1, maximum=10**6
    )
    context_batch_size: int = doc(
        "transitions per task in the context of a gradient step (oyster embedding_batch_size)",
        default=64,
        minimum=1,
        maximum=10**6,
    )
    replay_buffer_size: int = doc(
        "capacity of each task's replay buffer, in transitions (oldest overwritten first)",
        default=1_000_000,
        minimum=1,
        maximum=10**9,
    )
    reward_scale: float = doc(
        "multiplies rewards in the Bellman target: the inverse weight of the entropy bonus",
        default=5.0,
        above=0,
    )
    kl_lambda: float = doc("weight of KL(q(z|c) || N(0, I)) in the encoder's loss", default=0.1, minimum=0)
    lr: float = doc(
        "Adam learning rate of every network (oyster's four lrs, all 3e-4)", default=3e-4, above=0
    )
    soft_target_tau: float = doc("Polyak rate of the target value network", default=0.005, above=0, maximum=1)
    policy_regularization: float = doc(
        "weight of the mean^2 and log_std^2 penalties of the policy's Gaussian (oyster policy_mean_reg_weight, "
        "policy_std_reg_weight)",
        default=1e-3,
        minimum=0,
    )
    logged_trial_episodes: int = doc(
        "each iteration, play a trial of this many episodes (z from the prior, then from the posterior of the "
        "trial so far, deterministic actions) on the collected tasks and log meta/return_episode{j}; 0: none. "
        "Its env steps are not training data",
        default=3,
        minimum=0,
        maximum=MAX_EPISODES,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "pearl.")
        if not self.hidden_sizes or not self.encoder_hidden_sizes:
            raise UserError(
                "config keys 'pearl.hidden_sizes' and 'pearl.encoder_hidden_sizes' need >= 1 width"
            )
        if self.prior_episodes + self.posterior_episodes < 1:
            raise UserError(
                "config keys 'pearl.prior_episodes' + 'pearl.posterior_episodes' must be >= 1: the encoder buffer "
                "of a collected task is refilled from them"
            )
        if self.tasks_per_iteration > self.train_tasks:
            raise UserError(
                f"config key 'pearl.tasks_per_iteration' ({self.tasks_per_iteration}) must be <= pearl.train_tasks "
                f"({self.train_tasks})"
            )


@dataclass
class EvalConfig:
    """`metarl evaluate`: held-out tasks and the baselines fine-tuned next to the meta-learner."""

    tasks: int = doc("held-out tasks (at least 2, for a CI)", default=40, minimum=2, maximum=MAX_TASKS)
    adapt_steps: int = doc(
        "fine-tuning steps (returns after 0..k steps)", default=3, minimum=0, maximum=MAX_STEPS
    )
    baselines: list[Literal["pretrained", "random-init", "oracle", "sb3-ppo"]] = doc(
        "baselines to evaluate (oracle only where the env has task features; sb3-ppo needs metarl[sb3])",
        default_factory=lambda: ["pretrained", "random-init", "oracle"],
    )
    baseline_iterations: int | None = doc(
        "TRPO iterations of the pretrained/oracle policies (null: the run's meta-iterations)",
        default=None,
        minimum=1,
        maximum=10**9,
    )
    episodes_per_task: int | None = doc(
        "episodes per fine-tuning step on a held-out task (null: the training's episodes_per_task; "
        "the MAML paper's 2D-navigation test used 40, twice its training batch)",
        default=None,
        minimum=1,
        maximum=MAX_EPISODES,
    )
    later_steps_lr_scale: float = doc(
        "multiplies the fine-tuning step size after the first step (the MAML paper's 2D-navigation test: "
        "0.5, i.e. lr 0.5 then 0.25)",
        default=1.0,
        above=0,
    )
    experience_episodes: int | None = doc(
        "context-based agents (RL², PEARL): episodes played on each held-out task, memory or posterior carried "
        "across them (null: the agent's own, e.g. RL²'s trial length)",
        default=None,
        minimum=1,
        maximum=MAX_EPISODES,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "evaluation.")


@dataclass
class ESConfig:
    """ES-MAML and OpenAI-ES: the antithetic Gaussian search around the meta-parameters (Salimans et al. 2017;
    Song et al. 2020). An iteration evaluates ``2 x pairs + 1`` parameter vectors (the center only for logging)
    on ``meta_batch_size`` tasks, each in ``episodes_per_task`` episodes per sampling round; ``algo: openai-es``
    reads no ``adaptation*`` key (it scores the parameters as they are)."""

    pairs: int = doc(
        "antithetic pairs of perturbations per iteration (n)", default=20, minimum=1, maximum=MAX_TASKS
    )
    sigma: float = doc(
        "standard deviation of the perturbations of the meta-parameters", default=0.05, above=0
    )
    lr: float = doc("step size of the optimizer on the ES gradient estimate", default=0.02, above=0)
    optimizer: Literal["adam", "sgd"] = doc(
        "optimizer of the meta-parameters (ascent on the estimate)", default="adam"
    )
    weight_decay: float = doc(
        "L2 coefficient subtracted from the estimate, g - weight_decay * theta (Salimans et al.'s l2coeff)",
        default=0.0,
        minimum=0,
    )
    fitness_shaping: Literal["centered_ranks", "none"] = doc(
        "centered_ranks: replace the population's fitnesses by their ranks in [-0.5, 0.5] before the estimate; "
        "none: raw mean returns",
        default="centered_ranks",
    )
    adaptation: Literal["es", "pg", "hill_climbing", "none"] = doc(
        "es-maml's adaptation operator, whose post-adaptation return is the fitness: es (adaptation_steps ES "
        "steps with their own perturbations on the task), pg (adaptation_steps policy-gradient steps of the "
        "inner section: inner.lr, inner.algorithm, inner.optimizer), hill_climbing (keep the best of the "
        "current parameters and 2 x adaptation_pairs perturbations, adaptation_steps times) or none",
        default="es",
    )
    adaptation_steps: int = doc("K: adaptation steps on each task", default=1, minimum=0, maximum=MAX_STEPS)
    adaptation_pairs: int = doc(
        "adaptation es/hill_climbing: antithetic pairs per adaptation step",
        default=5,
        minimum=1,
        maximum=MAX_TASKS,
    )
    adaptation_sigma: float = doc(
        "adaptation es/hill_climbing: standard deviation of the adaptation's perturbations",
        default=0.05,
        above=0,
    )
    adaptation_lr: float = doc("adaptation es: step size of each ES adaptation step", default=0.05, above=0)

    def __post_init__(self) -> None:
        check_declared_bounds(self, "es.")


@dataclass
class SamplerConfig:
    """Where the episodes of a sampling round are collected: in this process, or split by task over Ray actors
    (the ``ray`` extra; ``docs/guides/many-machines.md``). Either gives the same numbers for the same seed."""

    backend: Literal["local", "ray"] = doc(
        "local: one batched engine in this process; ray: the round's tasks split over sampler.workers Ray actors",
        default="local",
    )
    workers: int = doc(
        "backend=ray: actors sampling in parallel (one CPU each), each with its own batched engine",
        default=2,
        minimum=1,
        maximum=MAX_WORKERS,
    )
    address: str | None = doc(
        "backend=ray: the Ray cluster to join (null: start a Ray instance in this process; auto: the cluster "
        "`ray start` runs on this machine; HOST:PORT: that head node)",
        default=None,
    )
    max_retries: int = doc(
        "backend=ray: slices re-run on a fresh actor when one dies, per sampling round, before the run stops",
        default=3,
        minimum=0,
        maximum=100,
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self, "sampler.")
        if self.address is not None and not self.address.strip():
            raise UserError("config key 'sampler.address' must be null, auto or HOST:PORT, got ''")


@dataclass
class TrainConfig:
    """A meta-RL run: algorithm, task distribution, budget and every hyperparameter."""

    # besides training.RESUMABLE_KEYS; where episodes are sampled does not change them
    RESUMABLE: ClassVar[tuple[str, ...]] = ("evaluation.", "sampler.")

    algo: Literal["maml-trpo", "reptile", "promp", "maml-ppo", "rl2", "pearl", "es-maml", "openai-es"] = doc(
        "meta-learner", default="maml-trpo"
    )
    env: str = doc("registered task-distribution id", default="MetaRL/Navigation2D-v0")
    env_kwargs: dict[str, Any] = doc("env constructor arguments", default_factory=dict)
    imports: list[str] = doc(
        "modules (dotted names or .py files) that register user task distributions, imported before the env "
        "is made; `metarl train --import` adds to it and a run records its env's module, so a new process "
        "finds the env again",
        default_factory=list,
    )
    seed: int = run_field("seed", default=0)
    iterations: int = run_field("iterations", default=500, minimum=1)
    meta_batch_size: int = run_field("meta_batch_size", default=20)
    episodes_per_task: int = doc(
        "episodes per task per sampling round", default=20, minimum=1, maximum=MAX_EPISODES
    )
    gamma: float = doc("discount factor", default=0.99, above=0, maximum=1)
    gae_lambda: float = doc("GAE lambda (1.0 = returns minus baseline)", default=1.0, minimum=0, maximum=1)
    oracle: bool = doc("append the task features to the observation", default=False)
    time_limit_seconds: float | None = run_field("time_limit_seconds", default=None)
    log_every: int = run_field("log_every", default=1)
    checkpoint_every: int = run_field("checkpoint_every", default=1)
    torch_threads: int | None = run_field("torch_threads", default=None)
    keep_freed_memory: bool = run_field("keep_freed_memory", default=True)
    policy: PolicyConfig = doc("policy network", default_factory=PolicyConfig)
    inner: InnerConfig = doc("inner loop / fine-tuning", default_factory=InnerConfig)
    trpo: TRPOConfig = doc("outer TRPO step", default_factory=TRPOConfig)
    reptile: ReptileConfig = doc("Reptile outer update", default_factory=ReptileConfig)
    promp: ProMPConfig = doc("outer PPO step of ProMP and MAML-PPO", default_factory=ProMPConfig)
    rl2: RL2Config = doc("RL^2: recurrent policy, trials and PPO", default_factory=RL2Config)
    evaluation: EvalConfig = doc("evaluation protocol", default_factory=EvalConfig)
    pearl: PEARLConfig = doc("PEARL (algo=pearl)", default_factory=PEARLConfig)
    es: ESConfig = doc("ES-MAML / OpenAI-ES: search distribution and adaptation", default_factory=ESConfig)
    sampler: SamplerConfig = doc(
        "where training episodes are sampled (local or Ray)", default_factory=SamplerConfig
    )

    def __post_init__(self) -> None:
        check_declared_bounds(self)
        copies = self.meta_batch_size * self.episodes_per_task
        if copies > MAX_ENV_COPIES:
            raise UserError(
                f"meta_batch_size x episodes_per_task = {copies} env copies per sampling round, more than "
                f"{MAX_ENV_COPIES}: lower one of them"
            )
        if self.algo in MAML_FAMILY and (self.inner.algorithm != "vpg" or self.inner.optimizer != "sgd"):
            raise UserError(
                f"{self.algo} differentiates through a plain gradient step: set inner.algorithm=vpg and "
                "inner.optimizer=sgd (ppo/adam inner loops are for algo=reptile)"
            )
        if self.algo == "promp" and self.inner.objective == "log_likelihood":
            raise UserError(
                "promp's inner step uses the low-variance curvature objective: set "
                "inner.objective=likelihood_ratio (or dice); the log-likelihood inner loss is algo=maml-ppo"
            )
        if self.algo == "reptile" and self.inner.steps < 1:
            raise UserError("config key 'inner.steps' must be >= 1 for reptile")
        if self.algo in ("es-maml", "openai-es"):
            self._check_es_round(copies)
            if self.inner.meta_sgd:
                raise UserError(
                    f"{self.algo} searches the policy's parameters only: set inner.meta_sgd=false"
                )
        if self.algo in ("rl2", "pearl") and self.sampler.backend != "local":
            raise UserError(
                f"{self.algo} samples in this process: set sampler.backend=local (the ray backend serves "
                "maml-trpo, promp, maml-ppo, reptile, es-maml and openai-es)"
            )
        if self.algo == "rl2" and self.rl2.minibatches > copies:
            raise UserError(
                f"config key 'rl2.minibatches' ({self.rl2.minibatches}) must be at most the trials of an iteration, "
                f"meta_batch_size x episodes_per_task = {copies}: lower it or play more trials"
            )

    def _check_es_round(self, copies: int) -> None:
        """Refuse an ES population whose sampling round would exceed the env copies a round may hold."""
        members = 2 * self.es.pairs + 1
        inner = 2 * self.es.adaptation_pairs + 1
        if (
            self.algo == "es-maml"
            and self.es.adaptation in ("es", "hill_climbing")
            and self.es.adaptation_steps
        ):
            members *= inner
        if members * copies > MAX_ENV_COPIES:
            raise UserError(
                f"an ES sampling round of {members} parameter vectors x meta_batch_size x episodes_per_task = "
                f"{members * copies} env copies is more than {MAX_ENV_COPIES}: lower es.pairs, "
                "es.adaptation_pairs, meta_batch_size or episodes_per_task"
            )

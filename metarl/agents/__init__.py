"""Meta-RL agents: MAML-TRPO, ProMP, MAML-PPO, Reptile-PG, ES-MAML, OpenAI-ES, RL^2 and PEARL over any task distribution of
:mod:`metarl.envs`.

Train from a script (or with ``metarl train``)::

    from metarl.agents import MAMLTRPO, TrainConfig, evaluate_run

    agent = MAMLTRPO(TrainConfig(env="MetaRL/Navigation2D-v0", iterations=100, seed=0))
    agent.train("runs/nav-maml")                      # writes config, checkpoints, metrics, TensorBoard
    results = evaluate_run("runs/nav-maml", adapt_steps=3, num_tasks=40)
    print(results["learners"]["maml-trpo"]["mean"])   # mean return after 0..3 adaptation steps

Works with any registered id with Box or Discrete actions (and Box or Discrete observations), through the
env's batched engine (``metarl.envs.make_batched``).
"""

from metarl.agents.adapted import AdaptedPolicy, load_adapted_policy
from metarl.agents.agent import GradientMetaRLAgent, MetaRLAgent
from metarl.agents.config import (
    ESConfig,
    EvalConfig,
    InnerConfig,
    PEARLConfig,
    PolicyConfig,
    ReptileConfig,
    RL2Config,
    TrainConfig,
    TRPOConfig,
)
from metarl.agents.es import ESMAML, OpenAIES
from metarl.agents.evaluate import evaluate_run, format_results
from metarl.agents.maml_rl import MAMLTRPO
from metarl.agents.pearl import PEARL
from metarl.agents.promp import MAMLPPO, ProMP
from metarl.agents.registry import ALGORITHMS, agent_class, load_agent
from metarl.agents.reptile_rl import ReptilePG
from metarl.agents.rl2 import RL2

__all__ = [
    "ALGORITHMS",
    "AdaptedPolicy",
    "MAMLPPO",
    "MAMLTRPO",
    "ESConfig",
    "ESMAML",
    "EvalConfig",
    "InnerConfig",
    "PEARLConfig",
    "GradientMetaRLAgent",
    "MetaRLAgent",
    "PEARL",
    "OpenAIES",
    "PolicyConfig",
    "ProMP",
    "ReptileConfig",
    "ReptilePG",
    "RL2",
    "RL2Config",
    "TRPOConfig",
    "TrainConfig",
    "agent_class",
    "evaluate_run",
    "format_results",
    "load_adapted_policy",
    "load_agent",
]

"""The meta-RL algorithms by name (``metarl train --algo``, a run's ``algo:``), and loading a run's agent."""

from __future__ import annotations

import os

from metarl.agents.agent import MetaRLAgent
from metarl.agents.config import TrainConfig
from metarl.agents.es import ESMAML, OpenAIES
from metarl.agents.maml_rl import MAMLTRPO
from metarl.agents.pearl import PEARL
from metarl.agents.promp import MAMLPPO, ProMP
from metarl.agents.reptile_rl import ReptilePG
from metarl.agents.rl2 import RL2
from metarl.errors import UserError
from metarl.training import RunDir, load_checkpoint, load_config, read_config_file

ALGORITHMS: dict[str, type[MetaRLAgent]] = {
    "maml-trpo": MAMLTRPO,
    "reptile": ReptilePG,
    "promp": ProMP,
    "maml-ppo": MAMLPPO,
    "rl2": RL2,
    "pearl": PEARL,
    "es-maml": ESMAML,
    "openai-es": OpenAIES,
}


def agent_class(algo: str) -> type[MetaRLAgent]:
    """The agent class of an ``algo`` name.

    Raises:
        UserError: an unknown name (the message lists the known ones).
    """
    if algo not in ALGORITHMS:
        raise UserError(f"unknown algo {algo!r}; choose from {list(ALGORITHMS)}")
    return ALGORITHMS[algo]


def load_agent(run_dir: str | os.PathLike[str] | RunDir) -> MetaRLAgent:
    """Rebuild the agent of a run directory from its config and latest checkpoint."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    saved = read_config_file(run.config_path)
    # Runs written before policy.normalized_actions existed sampled raw (clipped) actions.
    legacy = (
        [] if "normalized_actions" in (saved.get("policy") or {}) else ["policy.normalized_actions=false"]
    )
    config = load_config(TrainConfig, run.config_path, legacy)
    agent = agent_class(config.algo)(config)
    if run.has_checkpoint():
        agent.load_state_dict(
            load_checkpoint(run.checkpoint_path, required_keys=("algo", "iteration", "policy"))
        )
    return agent

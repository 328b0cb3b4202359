"""metarl: meta-learning for reinforcement learning and few-shot classification.

Importing metarl registers its task distributions with Gymnasium (``MetaRL/...`` ids).
``metarl.load(RUN_DIR)`` rebuilds a trained agent (:func:`metarl.agents.load_agent`), ready to ``adapt`` to a new
task.
"""

from metarl import envs  # noqa: F401  (registers the envs)

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":  # imported on first use, so that `import metarl` stays light (no torch)
        from metarl.agents.registry import load_agent

        return load_agent
    raise AttributeError(f"module 'metarl' has no attribute {name!r}")

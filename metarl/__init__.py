"""metarl: meta-learning for reinforcement learning and few-shot classification.

Importing metarl registers its task distributions with Gymnasium (``MetaRL/...`` ids).
"""

from metarl import envs  # noqa: F401  (registers the envs)

__version__ = "0.1.0"

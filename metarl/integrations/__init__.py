"""Adapters to other RL libraries; each imports its library on import, so none is loaded with ``metarl``."""

"""MuJoCo locomotion task distributions (extra ``metarl[mujoco]``) and their batched thread-pool engine.

This package is loaded lazily by the registered ids (``MetaRL/HalfCheetahVel-v0``, ...) when an env is
made, so ``import metarl`` works without mujoco installed; making a MuJoCo env without it raises
``gymnasium.error.DependencyNotInstalled`` saying what to install.
"""

try:
    import mujoco  # noqa: F401
except ImportError as exc:
    from gymnasium.error import DependencyNotInstalled

    raise DependencyNotInstalled(
        'the MuJoCo task distributions need the `mujoco` package: pip install "metarl[mujoco]"'
    ) from exc

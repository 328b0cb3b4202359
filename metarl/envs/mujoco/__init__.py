"""MuJoCo locomotion task distributions (extra ``metarl[mujoco]``) and their batched thread-pool engine.

The env modules import ``mujoco`` and Gymnasium's MuJoCo envs; they are loaded lazily by the registered
ids (``MetaRL/HalfCheetahVel-v0``, ...), so ``import metarl`` works without mujoco installed.
"""

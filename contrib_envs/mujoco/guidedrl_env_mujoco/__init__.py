"""MuJoCo adapters for guidedrl: ``Hopper-v5`` and ``HalfCheetah-v5``.

Observations are Gymnasium's own (joint positions and velocities, unscaled). Actions are joint
torques, a bounded vector (:class:`guidedrl.envs.BoxActions`, each in [-1, 1]). The expert of each is
a small PPO policy trained with guidedrl itself (``scripts/train_expert.py``) and shipped in
``experts/<env>.pt``.
"""

from __future__ import annotations

from typing import Any

from guidedrl import hookimpl
from guidedrl_env_mujoco.adapters import HalfCheetahAdapter, HopperAdapter, MujocoAdapter, PolicyExpert

__all__ = ["HalfCheetahAdapter", "HopperAdapter", "MujocoAdapter", "PolicyExpert", "register_envs"]


@hookimpl
def register_envs(register: Any) -> None:
    register("Hopper-v5", HopperAdapter, summary="Hopper: named joints, torque vector actions, PPO-policy expert")
    register("HalfCheetah-v5", HalfCheetahAdapter, summary="HalfCheetah: named joints, torque vector actions, PPO-policy expert")

"""Hopper-v5 and HalfCheetah-v5 adapters: every observation number named, torques as a bounded vector,
and an expert that is a small trained policy reading the JSON state."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from guidedrl.envs import BoxActions, Description, EnvAdapter, Expert

EXPERTS = Path(__file__).resolve().parent / "experts"


@functools.cache
def _load_weights(path: str) -> tuple[list[np.ndarray], list[np.ndarray], str, str]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    return (
        [w.numpy().astype(np.float64) for w in data["weights"]],
        [b.numpy().astype(np.float64) for b in data["biases"]],
        data.get("activation", "tanh"),
        data.get("output", "clip"),
    )


class PolicyExpert(Expert):
    """A small MLP policy (exported by ``scripts/train_expert.py``: PPO's tanh MLP with a clipped mean,
    or SAC's ReLU MLP with a tanh-squashed mean) that acts on the JSON state.

    The state's named numbers are put back into the observation vector in ``obs_names`` order, so
    the expert reads exactly what an LLM reads (values rounded to 4 decimals).

    - ``act``: the policy's mean action, clipped to [-1, 1].
    - ``critical_states``: steps whose taken action is far from the expert's (RMS gap per joint of
      at least ``min_gap``), scored by the gap (a gap of 1, half the torque range, scores 1).
    - ``implicit_reward``: ``1 - RMS gap`` clipped to [-1, 1]: +1 for the expert's action, 0 at half
      the torque range away, -1 at the full range.
    """

    def __init__(self, path: str | Path, obs_names: Sequence[str], *, min_gap: float = 0.25) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"expert weights {self.path} are missing; train them with "
                f"`python contrib_envs/mujoco/scripts/train_expert.py {self.path.stem}`"
            )
        self.obs_names = list(obs_names)
        self.min_gap = min_gap

    def action_for_obs(self, obs: np.ndarray) -> np.ndarray:
        weights, biases, activation, output = _load_weights(str(self.path))
        x = np.asarray(obs, dtype=np.float64)
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            x = x @ w.T + b
            if i < len(weights) - 1:
                x = np.tanh(x) if activation == "tanh" else np.maximum(x, 0.0)
        return np.tanh(x) if output == "tanh" else np.clip(x, -1.0, 1.0)

    def act(self, state: dict[str, Any]) -> list[float]:
        obs = np.array([state[name] for name in self.obs_names], dtype=np.float64)
        return [round(float(v), 3) for v in self.action_for_obs(obs)]

    def gap(self, state: dict[str, Any], action: Any) -> float:
        """RMS difference per joint between ``action`` and the expert's (torques in [-1, 1])."""
        best = np.asarray(self.act(state), dtype=np.float64)
        taken = np.clip(np.asarray(action, dtype=np.float64).ravel(), -1.0, 1.0)
        return float(np.sqrt(np.mean((taken - best) ** 2)))

    def critical_states(self, states, actions, rewards):  # noqa: ANN001, ANN201 - base signature
        out = []
        for t, (state, action) in enumerate(zip(states, actions, strict=True)):
            gap = self.gap(state, action)
            if gap >= self.min_gap:
                out.append({"t": t, "score": min(1.0, gap), "reason": f"torques {gap:.2f} (RMS) away from a good gait"})
        out.sort(key=lambda d: -d["score"])
        return out

    def implicit_reward(self, state: dict[str, Any], action: Any) -> float:
        return float(np.clip(1.0 - self.gap(state, action), -1.0, 1.0))


class MujocoAdapter(EnvAdapter):
    """Shared by the MuJoCo adapters: subclasses name the observation and the joints."""

    obs_names: ClassVar[tuple[str, ...]] = ()
    joint_names: ClassVar[tuple[str, ...]] = ()
    units: ClassVar[str] = (
        "Positions in metres, angles in radians, velocities per second; torques are in [-1, 1] "
        "(scaled motor gear)."
    )

    def action_vocabulary(self, space: gym.Space) -> BoxActions:
        return BoxActions(space.low, space.high, names=[f"{j} torque" for j in self.joint_names])

    def state(self, obs: np.ndarray) -> dict[str, float]:
        obs = np.asarray(obs, dtype=np.float64).ravel()
        if obs.size != len(self.obs_names):
            raise ValueError(f"{self.env_id} observations have {len(self.obs_names)} numbers, got {obs.size}")
        return {name: round(float(v), 4) for name, v in zip(self.obs_names, obs, strict=True)}

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        s = self.state(obs)
        return Description(text=self.summary(s) + " " + self.units, state=s)

    def summary(self, s: dict[str, float]) -> str:
        raise NotImplementedError

    @property
    def expert(self) -> PolicyExpert:
        return PolicyExpert(EXPERTS / f"{self.env_id}.pt", self.obs_names)


class HopperAdapter(MujocoAdapter):
    env_id = "Hopper-v5"
    task = (
        "Hopper: a one-legged robot (torso, thigh, leg, foot) in a 2-D plane must hop forward (to +x) "
        "as fast as it can. Reward per step: forward velocity + 1 for staying healthy - 0.001 x "
        "squared torques. The episode ends when it falls: torso height below 0.7 m, torso angle "
        "beyond +/-0.2 rad, or any other number beyond +/-100; at most 1000 steps."
    )
    obs_names = (
        "torso_height", "torso_angle", "thigh_angle", "leg_angle", "foot_angle",
        "forward_velocity", "vertical_velocity", "torso_angular_velocity",
        "thigh_angular_velocity", "leg_angular_velocity", "foot_angular_velocity",
    )
    joint_names = ("thigh", "leg", "foot")

    def summary(self, s: dict[str, float]) -> str:
        return (
            f"The torso is {s['torso_height']:.3f} m high (falls below 0.7) at an angle of "
            f"{s['torso_angle']:+.3f} rad (limit +/-0.2); it moves forward at {s['forward_velocity']:+.2f} "
            f"m/s and up at {s['vertical_velocity']:+.2f} m/s. Joint angles: thigh {s['thigh_angle']:+.3f}, "
            f"leg {s['leg_angle']:+.3f}, foot {s['foot_angle']:+.3f} rad."
        )


class HalfCheetahAdapter(MujocoAdapter):
    env_id = "HalfCheetah-v5"
    task = (
        "HalfCheetah: a 2-D cat-like robot (torso, back thigh/shin/foot, front thigh/shin/foot) must run "
        "forward (to +x) as fast as it can. Reward per step: forward velocity - 0.1 x squared torques. "
        "It never falls over for good; every episode lasts 1000 steps."
    )
    obs_names = (
        "torso_height", "torso_angle",
        "back_thigh_angle", "back_shin_angle", "back_foot_angle",
        "front_thigh_angle", "front_shin_angle", "front_foot_angle",
        "forward_velocity", "vertical_velocity", "torso_angular_velocity",
        "back_thigh_angular_velocity", "back_shin_angular_velocity", "back_foot_angular_velocity",
        "front_thigh_angular_velocity", "front_shin_angular_velocity", "front_foot_angular_velocity",
    )
    joint_names = ("back_thigh", "back_shin", "back_foot", "front_thigh", "front_shin", "front_foot")

    def summary(self, s: dict[str, float]) -> str:
        return (
            f"The torso is at height {s['torso_height']:+.3f} m, pitched {s['torso_angle']:+.3f} rad, moving "
            f"forward at {s['forward_velocity']:+.2f} m/s. Back leg angles (thigh, shin, foot): "
            f"{s['back_thigh_angle']:+.2f}, {s['back_shin_angle']:+.2f}, {s['back_foot_angle']:+.2f}; front: "
            f"{s['front_thigh_angle']:+.2f}, {s['front_shin_angle']:+.2f}, {s['front_foot_angle']:+.2f} rad."
        )

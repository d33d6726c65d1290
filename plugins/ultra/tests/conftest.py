"""Fixtures of ULTRA's tests: a real run context around a toy adapter, and a scripted stand-in LLM.

The scripted LLM has the methods of ``guidedrl.llm.LLMClient`` that ULTRA calls and answers from
lists or callables, so a test states exactly what "the LLM" says, including malformed answers (which
the real client turns into ``None``, and which ULTRA must reject again if they slip through).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from guidedrl.config import RunConfig
from guidedrl.context import RunContext
from guidedrl.envs import BoxActions, Description, EnvAdapter, Expert
from guidedrl.llm.testing import CorridorAdapter
from guidedrl.plugins import make_manager
from guidedrl.types import Episode


class ScriptedLLM:
    """Answers ULTRA's questions from scripts; records every question asked."""

    def __init__(self, *, critical: Any = None, action: Any = None, reward: Any = None) -> None:
        self.critical, self.action, self.reward = critical, action, reward
        self.asked: dict[str, list[Any]] = {"critical_states": [], "action": [], "implicit_reward": []}
        self.exhausted = False

    def _answer(self, script: Any, *args: Any) -> Any:
        return script(*args) if callable(script) else script

    def critical_states(self, episode: Episode, *, max_states: int = 5, chunk_len: int = 50, overlap: int = 10) -> Any:
        self.asked["critical_states"].append((episode, max_states, chunk_len, overlap))
        return self._answer(self.critical, episode)

    def suggest_actions(self, obs_batch: Any, infos: Any = None, *, bad_actions: Any = None) -> list[Any]:
        out = []
        for i, obs in enumerate(obs_batch):
            bad = None if bad_actions is None else bad_actions[i]
            self.asked["action"].append((np.asarray(obs), bad))
            out.append(self._answer(self.action, np.asarray(obs), bad))
        return out

    def implicit_reward(self, obs: Any, action: Any, info: Any = None) -> Any:
        self.asked["implicit_reward"].append((np.asarray(obs), action))
        return self._answer(self.reward, np.asarray(obs), action)

    def summary(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class LineEnv(gym.Env):
    """A 2-D continuous toy: the state drifts by the action; reward -|state|."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.s = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.t = 0
        return self.s.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.s = np.clip(self.s + np.asarray(action, np.float32), -10, 10)
        self.t += 1
        return self.s.copy(), -float(np.abs(self.s).sum()), False, self.t >= 20, {}


class LineExpert(Expert):
    def act(self, state: dict[str, Any]) -> list[float]:
        return [float(np.clip(-v, -1, 1)) for v in state["position"]]


class LineAdapter(EnvAdapter):
    """Continuous toy adapter (Box actions in [-1, 1]^2)."""

    env_id = "Line-v0"
    task = "Bring the point to the origin."

    def make(self, **kwargs: Any) -> gym.Env:
        return LineEnv()

    def action_vocabulary(self, space: gym.Space) -> BoxActions:
        return BoxActions(space.low, space.high, names=["dx", "dy"])

    def describe(self, obs: np.ndarray, info: Any = None) -> Description:
        return Description(text=f"point at {obs.tolist()}", state={"position": [float(v) for v in obs]})

    @property
    def expert(self) -> LineExpert:
        return LineExpert()


@pytest.fixture
def make_ctx(tmp_path):
    """``make_ctx(adapter=None, llm=None, algo="ppo", **config)`` → a RunContext with ``ctx.llm`` set."""

    def make(adapter: Any = None, llm: Any = None, **config: Any) -> RunContext:
        ctx = RunContext(
            config=RunConfig(**config),
            adapter=adapter if adapter is not None else CorridorAdapter(length=10, goal=7),
            pm=make_manager(()),
            run_dir=tmp_path,
            device=torch.device("cpu"),
        )
        ctx._llm = llm if llm is not None else ScriptedLLM()
        ctx.pm.method_order = ["ultra", "other"]  # what guidance.advised_by codes refer to (0: ULTRA)
        return ctx

    return make


@pytest.fixture
def scripted():
    return ScriptedLLM


@pytest.fixture
def line_adapter():
    return LineAdapter()


def corridor_episode(positions: list[int], actions: list[int], goal: int = 7) -> Episode:
    obs = np.array([[p, goal] for p in positions], dtype=np.float32)
    return Episode(obs=obs, act=np.asarray(actions), rew=np.zeros(len(positions)))


@pytest.fixture
def episode():
    """``episode(positions, actions)`` → a Corridor episode."""
    return corridor_episode

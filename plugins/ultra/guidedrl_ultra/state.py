"""What ULTRA keeps during a run, in ``ctx.state["ultra"]`` (never in globals, so it mixes with other
methods and two runs in one process do not share anything)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import attrs
import gymnasium as gym
import numpy as np

from guidedrl.errors import ConfigError
from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.matching import CriticalStateTable

if TYPE_CHECKING:
    from guidedrl.context import RunContext

KEY = "ultra"


@attrs.define(kw_only=True)
class UltraState:
    """ULTRA's run state: the critical-state table and the bookkeeping of analyses."""

    table: CriticalStateTable
    analysed: int = 0
    """Episodes analysed so far."""
    last_analysis_step: int = 0
    """Env step of the last analysis (for ``refresh_every``)."""

    def state_dict(self) -> dict[str, Any]:
        return {"table": self.table.state_dict(), "analysed": self.analysed, "last_analysis_step": self.last_analysis_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table.load_state_dict(state["table"])
        self.analysed = int(state["analysed"])
        self.last_analysis_step = int(state["last_analysis_step"])


def state_of(ctx: RunContext, config: UltraConfig) -> UltraState:
    """ULTRA's state of this run, created on first use."""
    slot = ctx.state[KEY]
    if "run" not in slot:
        slot["run"] = UltraState(table=make_table(ctx, config))
    return slot["run"]


def make_table(ctx: RunContext, config: UltraConfig) -> CriticalStateTable:
    """A table with the configured features and matching rule (``auto`` resolved here)."""
    adapter = ctx.adapter
    adapter_features = getattr(adapter, "match_features", None)
    if config.features == "adapter" and adapter_features is None:
        raise ConfigError(
            f"ultra.features = 'adapter', but the adapter of {getattr(adapter, 'env_id', adapter)!r} has no "
            "match_features(obs_batch); use ultra.features = 'obs' or give the adapter that method."
        )
    use_adapter = adapter_features is not None and config.features in ("auto", "adapter")

    def features(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        if use_adapter:
            return np.asarray(adapter_features(obs), dtype=np.float64).reshape(len(obs), -1)
        return obs.reshape(len(obs), -1).astype(np.float64)

    rule = config.match
    if rule == "auto":
        rule = "exact" if _discrete_observations(ctx) and not use_adapter else "nearest"
    return CriticalStateTable(
        features, rule=rule, tolerance=config.tolerance, decimals=config.decimals, max_size=config.max_table
    )


def _discrete_observations(ctx: RunContext) -> bool:
    """Whether the env's observations are discrete (Discrete/MultiDiscrete or an integer Box)."""
    space = getattr(ctx, "observation_space", None)
    if space is None:
        try:
            env = ctx.adapter.make()
        except Exception:  # noqa: BLE001 - a toy adapter in a test may not make envs; assume continuous
            return False
        try:
            space = env.observation_space
        finally:
            env.close()
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return True
    return isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.integer)


def valid_rating(value: Any) -> float | None:
    """An implicit reward the LLM layer handed over, if it is a finite number in [-1, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        return None
    value = float(value)
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        return None
    return value


def legal_action(ctx: RunContext, action: Any) -> Any:
    """The action if the adapter's vocabulary accepts it (env space), else ``None`` (nothing applied).

    The LLM layer validates already; checking again costs little and keeps a misbehaving backend or
    a hand-written fake from ever reaching the env.
    """
    if action is None:
        return None
    from guidedrl.envs import InvalidAction

    vocab = ctx.adapter.vocabulary
    try:
        if getattr(vocab, "kind", None) == "box":
            return vocab.parse(np.asarray(action, dtype=np.float64).tolist())
        return vocab.parse(action.item() if isinstance(action, np.ndarray) and action.ndim == 0 else action)
    except (InvalidAction, TypeError, ValueError):
        return None

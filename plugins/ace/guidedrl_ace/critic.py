"""LLM as value critic (ACE §4.2): counterfactual reward reassignment at the key steps of finished
trajectories, from ``critic_start`` env steps on.

Key steps are the steps whose reward stands out (``|r - baseline| > key_threshold``, at most
``max_keys``, largest first). The LLM reads the trajectory around them (``window``) and answers, per
key step, a level in {-2, -1, +1, +2} ("what if another action had been taken here?"); the
reassigned reward ``level * K`` is added to the transition's stored reward ONCE, through the core's
bonus column (``guidance.set_bonus``), so every later n-step target uses it. Levels outside the set
(a hostile answer that slipped through) are counted and ignored; steps the buffer has overwritten
since are skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from guidedrl import guidance
from guidedrl_ace import finetune
from guidedrl_ace.config import AceConfig
from guidedrl_ace.state import AceState

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.types import Episode

C = "ace/critic_"


def key_steps(config: AceConfig, episode: Episode) -> list[int]:
    """The key steps of ``episode``, in time order."""
    rew = np.asarray(episode.rew, dtype=np.float64)
    if not len(rew):
        return []
    base = float(np.median(rew)) if config.key_baseline == "median" else 0.0
    dev = np.abs(rew - base)
    keys = np.nonzero(dev > config.key_threshold)[0]
    keys = keys[np.argsort(-dev[keys], kind="stable")][: config.max_keys]
    return sorted(int(t) for t in keys)


def window_of(config: AceConfig, episode: Episode, keys: list[int]) -> tuple[int, int]:
    """The part of the episode the critic reads: ``window`` steps before the first key step to the last."""
    if config.window <= 0:
        return 0, len(episode)
    return max(0, keys[0] - config.window), keys[-1] + 1


def reassign(ctx: RunContext, config: AceConfig, st: AceState, episodes: list[Episode]) -> int:
    """Reassign rewards at the key steps of ``episodes``; returns how many transitions changed."""
    if ctx.env_steps < config.critic_start or ctx.replay is None:
        return 0
    changed = 0
    for episode in episodes:
        if st.critic_calls >= config.critic_calls or ctx.llm.exhausted:
            break
        keys = key_steps(config, episode)
        if not keys or episode.indices is None:
            continue
        lo, hi = window_of(config, episode, keys)
        part = _slice(episode, lo, hi)
        st.critic_calls += 1
        ctx.counters[C + "trajectories"] += 1
        answer = ctx.llm.critique_rewards(part, [t - lo for t in keys], k=config.k)
        if not isinstance(answer, dict):
            ctx.counters[C + "failed"] += 1
            continue
        allowed = {-2 * config.k, -config.k, config.k, 2 * config.k}
        levels: dict[int, float] = {}
        for t_local, value in answer.items():
            t = _int(t_local)
            ok_value = _float(value)
            if t is None or t + lo not in keys or ok_value is None or not any(np.isclose(ok_value, a) for a in allowed):
                ctx.counters[C + "invalid_levels"] += 1
                continue
            levels[t + lo] = ok_value
        changed += _store(ctx, episode, levels)
        if levels and config.export:
            finetune.append_critic(ctx, st, part, [t - lo for t in keys], {t - lo: v / config.k for t, v in levels.items()})
    return changed


def _store(ctx: RunContext, episode: Episode, levels: dict[int, float]) -> int:
    """Add each reassigned reward to its transition's bonus, once; skip overwritten slots."""
    buffer = ctx.replay
    ts = [t for t in sorted(levels) if t < len(episode.indices)]
    if not ts:
        return 0
    idx = np.asarray([episode.indices[t] for t in ts], dtype=np.int64)
    live = np.asarray([np.array_equal(np.asarray(buffer.obs[i]), episode.obs[t]) for i, t in zip(idx, ts)])
    ctx.counters[C + "stale"] += int((~live).sum())
    if not live.any():
        return 0
    idx, values = idx[live], np.asarray([levels[t] for t, ok in zip(ts, live) if ok])
    guidance.set_bonus(buffer, idx, guidance.bonus_of(buffer[idx]) + values)
    ctx.counters[C + "reassigned"] += len(idx)
    return len(idx)


def _slice(episode: Episode, lo: int, hi: int) -> Episode:
    cut = {
        "obs": episode.obs[lo:hi],
        "act": episode.act[lo:hi],
        "rew": episode.rew[lo:hi],
        "obs_next": None if episode.obs_next is None else episode.obs_next[lo:hi],
        "infos": None if episode.infos is None else episode.infos[lo:hi],
        "indices": None if episode.indices is None else episode.indices[lo:hi],
        "terminated": episode.terminated and hi >= len(episode),
    }
    return attrs.evolve(episode, **cut)


def _int(x: Any) -> int | None:
    try:
        return int(x)
    except (TypeError, ValueError, OverflowError):
        return None


def _float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if np.isfinite(v) else None

"""ULTRA, phase 2 — policy improvement at critical states.

While collecting training data, each state is checked against the critical-state table (see
:mod:`guidedrl_ultra.matching` for the rule). At a matched critical state:

- ULTRA-A executes the LLM's action instead of the policy's (``refine_action``); elsewhere the
  policy acts as usual;
- ULTRA-R adds an implicit reward (``shape_reward``): ``reward_scale`` x the LLM's rating in [-1, 1]
  of the action executed there. Ratings are per (critical state, action); an executed action the
  LLM has not rated yet is rated on first sight (``rate_executed``, up to ``max_ratings_per_state``
  actions per state); continuous actions within ``action_tolerance`` share a rating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from guidedrl.types import ActionAdvice
from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.matching import CriticalEntry
from guidedrl_ultra.state import UltraState, valid_rating

if TYPE_CHECKING:
    from guidedrl.context import RunContext


def refine_action(ctx: RunContext, config: UltraConfig, st: UltraState, obs: np.ndarray, act: np.ndarray) -> ActionAdvice | None:
    """The LLM's action where a ready env is at a known critical state (A); ``None`` elsewhere."""
    obs = np.asarray(obs)
    st.table.observe(obs)
    if not config.advises or len(st.table) == 0:
        return None
    idx = st.table.match(obs)
    mask = idx >= 0
    ctx.counters["ultra/matched_states"] += int(mask.sum())
    for row in np.nonzero(mask)[0]:
        if st.table.entries[idx[row]].advice is None:
            mask[row] = False
    if config.advice_prob < 1.0 and mask.any():
        mask &= ctx.rng.random(len(mask)) < config.advice_prob
    if not mask.any():
        return None
    new = np.array(act, copy=True)
    for row in np.nonzero(mask)[0]:
        new[row] = np.asarray(st.table.entries[idx[row]].advice, dtype=new.dtype)
    return ActionAdvice(act=new, mask=mask)


def shape_reward(ctx: RunContext, config: UltraConfig, st: UltraState, batch: Any) -> np.ndarray | None:
    """Implicit rewards for the transitions of ``batch`` that start at a known critical state (R)."""
    if not config.rewards or len(st.table) == 0 or len(batch) == 0:
        return None
    obs = np.asarray(batch.obs)
    idx = st.table.match(obs)
    rows = np.nonzero(idx >= 0)[0]
    if rows.size == 0:
        return None
    executed = env_actions(ctx, batch.act[rows])
    bonus = np.zeros(len(obs), dtype=np.float64)
    applied = 0
    for row, action in zip(rows, executed, strict=True):
        rating = rating_of(ctx, config, st.table.entries[idx[row]], action)
        if rating is not None:
            bonus[row] = config.reward_scale * rating
            applied += 1
    ctx.counters["ultra/implicit_rewards"] += applied
    return bonus if applied else None


def env_actions(ctx: RunContext, act: Any) -> np.ndarray:
    """Stored (policy-space) actions of a batch in env space, as the LLM saw and rated them."""
    act = act.cpu().numpy() if hasattr(act, "cpu") else np.asarray(act)
    policy = ctx.policy
    if policy is not None and getattr(policy, "action_type", None) == "continuous":
        act = np.asarray(policy.map_action(act))
    vocab = ctx.adapter.vocabulary
    if getattr(vocab, "kind", None) == "box":
        return np.clip(act.astype(np.float32).reshape(len(act), -1), vocab.low, vocab.high)
    return act.reshape(len(act)).astype(np.int64)


def rating_of(ctx: RunContext, config: UltraConfig, entry: CriticalEntry, action: Any) -> float | None:
    """The LLM's implicit reward for ``action`` at a critical state, asking once if it is new.

    ``None`` (no bonus) when the LLM's answer was unusable; that is remembered, not asked again.
    """
    vocab = ctx.adapter.vocabulary
    box = getattr(vocab, "kind", None) == "box"
    found, best_d = False, np.inf
    best: float | None = None
    for rated, value in entry.ratings:
        if box:
            half = np.maximum((vocab.high - vocab.low) / 2.0, 1e-8)
            d = float(np.sqrt(np.mean(((np.asarray(rated) - action) / half) ** 2)))
            if d <= config.action_tolerance and d < best_d:
                found, best, best_d = True, value, d
        elif int(np.asarray(rated).item()) == int(action):
            return value
    if found:
        return best
    if not config.rate_executed or len(entry.ratings) >= config.max_ratings_per_state or ctx.llm.exhausted:
        return None
    action = np.asarray(action, dtype=np.float32).copy() if box else int(action)
    rating = valid_rating(ctx.llm.implicit_reward(entry.obs, action))
    ctx.counters["ultra/reward_ratings" if rating is not None else "ultra/fallbacks"] += 1
    entry.ratings.append((action, rating))
    return rating

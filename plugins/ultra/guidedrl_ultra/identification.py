"""ULTRA, phase 1 — critical state identification.

The policy the run starts from (``train.init_from``: the sub-optimal policy) produces the first
training episodes. For the first ``episodes`` of them (and, with ``refresh_every``, a few fresh ones
every so many steps) the LLM reads the trajectory — long ones in overlapping chunks — and names its
*critical states*: steps where the action strongly changes the future return. For each critical state
it is then asked for a better action (A) and/or an *implicit reward* for the action the policy took
(R). What comes back goes into the critical-state table that phase 2 consults.

Every LLM answer that is missing, malformed or out of range (``None`` from the LLM layer, or a value
this module rejects) is dropped: that state gets no guidance, and the fallback is counted.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from guidedrl.types import CriticalState, Episode
from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.matching import CriticalEntry
from guidedrl_ultra.state import UltraState, legal_action, valid_rating

if TYPE_CHECKING:
    from guidedrl.context import RunContext


def episodes_to_analyse(ctx: RunContext, config: UltraConfig, st: UltraState, episodes: Sequence[Episode]) -> list[int]:
    """Which of the just-finished episodes to analyse: the first ``config.episodes`` of the run, then
    ``refresh_episodes`` every ``refresh_every`` env steps."""
    if st.analysed < config.episodes:
        return list(range(min(len(episodes), config.episodes - st.analysed)))
    if config.refresh_every and ctx.env_steps - st.last_analysis_step >= config.refresh_every:
        return list(range(min(len(episodes), config.refresh_episodes)))
    return []


def valid_items(items: Any, length: int, min_score: float = 0.0) -> list[dict[str, Any]]:
    """Keep the well-formed critical states of an LLM answer: ``t`` an integer step of the episode,
    ``score`` a finite number (clipped to [0, 1]) at least ``min_score``; one entry per step."""
    if not isinstance(items, (list, tuple)):
        return []
    out: dict[int, dict[str, Any]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        t, score = item.get("t"), item.get("score", 1.0)
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < length:
            continue
        if isinstance(score, bool) or not isinstance(score, (int, float, np.number)) or not math.isfinite(float(score)):
            continue
        score = min(1.0, max(0.0, float(score)))
        if score < min_score:
            continue
        t = int(t)
        if t not in out or score > out[t]["score"]:
            out[t] = {"t": t, "score": score, "reason": str(item.get("reason", ""))[:300]}
    return sorted(out.values(), key=lambda d: (-d["score"], d["t"]))


def concurrently(fn: Callable[..., Any], args: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """``[fn(*a) for a in args]`` on a few threads (the LLM layer is thread-safe; for a real LLM the
    calls overlap, for the simulated one it costs nothing)."""
    if workers <= 1 or len(args) <= 1:
        return [fn(*a) for a in args]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(args))) as pool:
        return list(pool.map(lambda a: fn(*a), args))


def identify(ctx: RunContext, config: UltraConfig, st: UltraState, episodes: list[Episode]) -> list[CriticalState] | None:
    """Analyse the episodes that are due, store their critical states with the LLM's guidance in the
    table and return them (``episode`` indexes ``episodes``)."""
    chosen = episodes_to_analyse(ctx, config, st, episodes)
    if not chosen:
        return None
    ctx.require_adapter("ultra")
    llm = ctx.llm
    st.analysed += len(chosen)
    st.last_analysis_step = ctx.env_steps
    ctx.counters["ultra/episodes_analysed"] += len(chosen)

    # 1. which steps are critical (the LLM layer chunks long episodes itself)
    found: list[tuple[int, dict[str, Any]]] = []
    for i in chosen:
        episode = episodes[i]
        st.table.observe(episode.obs)
        answer = llm.critical_states(episode, max_states=config.max_states, chunk_len=config.chunk_len, overlap=config.overlap)
        if answer is None:
            ctx.counters["ultra/fallbacks"] += 1
            continue
        items = valid_items(answer, len(episode), config.min_score)
        if isinstance(answer, (list, tuple)):
            ctx.counters["ultra/rejected_items"] += len(answer) - len(items)
        found.extend((i, item) for item in items[: config.max_states])
    if not found:
        return []

    obs = np.stack([np.asarray(episodes[i].obs[item["t"]]) for i, item in found])
    taken = [_env_action(ctx, episodes[i].act[item["t"]]) for i, item in found]

    # 2. a better action for each (A)
    advice: list[Any] = [None] * len(found)
    if config.advises:
        answers = llm.suggest_actions(obs, bad_actions=taken)
        if not isinstance(answers, (list, tuple)) or len(answers) != len(found):
            answers = [None] * len(found)
        advice = [legal_action(ctx, a) for a in answers]
        ctx.counters["ultra/advice"] += sum(a is not None for a in advice)
        ctx.counters["ultra/fallbacks"] += sum(a is None for a in advice)

    # 3. implicit rewards: of the action taken (R), and of the LLM's own action (RA)
    ratings: list[list[tuple[Any, float]]] = [[] for _ in found]
    if config.rewards:
        asks = [(k, taken[k]) for k in range(len(found))]
        asks += [(k, advice[k]) for k in range(len(found)) if advice[k] is not None and not _same(advice[k], taken[k])]
        workers = getattr(getattr(ctx.config, "llm", None), "max_concurrency", 1)
        values = concurrently(lambda k, a: llm.implicit_reward(obs[k], a), asks, workers)
        for (k, action), value in zip(asks, values, strict=True):
            rating = valid_rating(value)
            if rating is None:
                ctx.counters["ultra/fallbacks"] += 1
                continue
            ratings[k].append((action, rating))
            ctx.counters["ultra/reward_ratings"] += 1

    # 4. into the table (states without any usable guidance are not kept)
    entries, states = [], []
    for k, (i, item) in enumerate(found):
        if advice[k] is None and not ratings[k]:
            continue
        entries.append(
            CriticalEntry(
                obs=obs[k], features=st.table.feats(obs[k][None])[0], taken=taken[k], score=item["score"],
                reason=item["reason"], advice=advice[k], ratings=ratings[k], step=ctx.env_steps,
            )
        )
        own = [r for a, r in ratings[k] if _same(a, taken[k])]
        states.append(
            CriticalState(
                episode=i, t=item["t"], obs=obs[k], score=item["score"], reason=item["reason"],
                action=advice[k], reward=own[0] if own else None,
            )
        )
    added, merged = st.table.add(entries)
    ctx.counters["ultra/critical_states"] += added
    ctx.counters["ultra/critical_states_merged"] += merged
    return states


def _env_action(ctx: RunContext, action: Any) -> Any:
    """An executed action as the vocabulary knows it (discrete: int; box: clipped float vector)."""
    vocab = ctx.adapter.vocabulary
    arr = np.asarray(action)
    if getattr(vocab, "kind", None) == "box":
        return np.clip(arr.astype(np.float32).ravel(), vocab.low, vocab.high)
    return int(arr.item())


def _same(a: Any, b: Any) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))

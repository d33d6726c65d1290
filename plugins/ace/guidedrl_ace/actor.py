"""LLM as policy actor (ACE §4.1): refine the low-reward transitions of finished episodes.

For each chosen transition ``(s, a, r)`` with ``r`` below r̄ (``reward_threshold``):

1. **bad-case reasoning** — the LLM is asked for an action in ``s`` with ``a`` shown as the
   sub-optimal example (``bad_action``; an answer equal to it is invalid, in the question's validator
   and again here);
2. **multi-round reasoning** — the proposal is checked with ``adapter.simulate(state, action)``; when
   it fails (illegal, game over) or does not beat ``r``, the simulator's verdict is fed back in the
   next question's history, up to ``rounds`` proposals;
3. an accepted proposal ``(s, a_LLM, r_sim, s'_sim)`` goes to D_LLM with its importance weight
   (:mod:`.replay`), and the exchange to the fine-tuning file (:mod:`.finetune`).

The prompt holds the adapter's ``describe()`` (state in words and JSON, with its candidate shortlist)
and its vocabulary's ``prompt_text()`` — never a list of the whole action space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from guidedrl.envs import InvalidAction
from guidedrl_ace import finetune, replay
from guidedrl_ace.config import AceConfig
from guidedrl_ace.state import AceState

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.types import Episode

C = "ace/actor_"


def low_reward_steps(config: AceConfig, episode: Episode) -> list[int]:
    """Steps of ``episode`` with reward below r̄, lowest reward first, at most ``per_episode``."""
    rew = np.asarray(episode.rew, dtype=np.float64)
    low = np.nonzero(rew < config.reward_threshold)[0]
    order = low[np.argsort(rew[low], kind="stable")]
    return [int(t) for t in order[: config.per_episode]]


def simulate(adapter: Any, state: Any, action: Any) -> dict[str, Any]:
    """``adapter.simulate`` as a dict ``{ok, reward, reason, obs_next}``: a core ``SimResult`` (what
    the Grid2Op adapter answers; the simulated next observation in ``info["obs_next"]``), a plain dict
    from a third-party adapter, or ``None`` (cannot simulate) are read alike."""
    try:
        result = adapter.simulate(state, action)
    except Exception as exc:  # noqa: BLE001 - an adapter's error is a failed check, not a crash
        return {"ok": False, "reward": None, "reason": f"simulation failed: {type(exc).__name__}", "obs_next": None}
    if result is None:
        return {"ok": False, "reward": None, "reason": "the simulator cannot check this state", "obs_next": None}
    get = result.get if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    info = get("info", None) or {}
    return {
        "ok": bool(get("ok", False)),
        "reward": get("reward", None),
        "reason": str(get("reason", "") or ""),
        "obs_next": get("obs_next", None) if get("obs_next", None) is not None else info.get("obs_next"),
    }


def refine(ctx: RunContext, config: AceConfig, st: AceState, episodes: list[Episode]) -> int:
    """Refine the low-reward transitions of ``episodes``; returns how many were accepted into D_LLM."""
    if not hasattr(ctx.adapter, "simulate"):
        return 0
    rows = []
    for episode in episodes:
        for t in low_reward_steps(config, episode):
            if st.actor_calls >= config.actor_calls or ctx.llm.exhausted:
                break
            row = refine_step(ctx, config, st, episode.obs[t], episode.act[t], float(episode.rew[t]))
            if row is not None:
                rows.append(row)
    return replay.add_llm_transitions(ctx, config, rows)


def refine_step(
    ctx: RunContext, config: AceConfig, st: AceState, obs: np.ndarray, bad: Any, r_bad: float
) -> dict[str, Any] | None:
    """Bad-case + multi-round reasoning for one transition; the D_LLM row if a proposal is accepted."""
    adapter, vocab = ctx.adapter, ctx.adapter.vocabulary
    desc = adapter.describe(obs)
    state = desc.state if isinstance(desc.state, dict) and "snapshot" in desc.state else obs
    bad_index = _parse(vocab, bad)
    ctx.counters[C + "transitions"] += 1
    feedback: list[str] = []
    for round_ in range(1, config.rounds + 1):
        if st.actor_calls >= config.actor_calls:
            break
        st.actor_calls += 1
        ctx.counters[C + "rounds"] += 1
        history = "\n".join(feedback) if feedback else None
        answer = ctx.llm.suggest_action(obs, bad_action=bad, history=history)
        if answer is None:  # the client's fallback: no valid answer after its re-asks
            ctx.counters[C + "invalid"] += 1
            feedback.append(f"Round {round_}: no valid action was given; answer with one action of the vocabulary.")
            continue
        ctx.counters[C + "proposals"] += 1
        action = _parse(vocab, answer)
        if action is None:
            ctx.counters[C + "invalid"] += 1
            feedback.append(f"Round {round_}: {answer!r} is not an action of the vocabulary.")
            continue
        if bad_index is not None and action == bad_index:
            ctx.counters[C + "bad_case"] += 1
            feedback.append(f"Round {round_}: you proposed the sub-optimal action itself; choose a different one.")
            continue
        sim = simulate(adapter, state, action)
        words = _words(vocab, action)
        if not sim["ok"] or sim["reward"] is None:
            ctx.counters[C + "sim_failed"] += 1
            feedback.append(f"Round {round_}: {words} failed in the simulator: {sim['reason'] or 'not ok'}.")
            continue
        r_llm = float(sim["reward"])
        if r_llm <= r_bad + config.min_gain:
            ctx.counters[C + "not_better"] += 1
            feedback.append(
                f"Round {round_}: {words} gives a simulated reward of {r_llm:.3f}, no better than the "
                f"sub-optimal action's {r_bad:.3f}; try another."
            )
            continue
        ctx.counters[C + "accepted"] += 1
        obs_next = sim["obs_next"]
        if obs_next is None:  # the simulator gave no next state: bootstrap from s itself (README)
            ctx.counters[C + "no_next_obs"] += 1
            obs_next = obs
        if config.export:
            finetune.append_actor(ctx, st, desc, bad, action, feedback, r_llm)
        return {
            "obs": np.asarray(obs),
            "act": action,
            "rew": r_llm,
            "obs_next": np.asarray(obs_next, dtype=np.asarray(obs).dtype),
            "weight": replay.importance_weight(config, r_llm, r_bad),
        }
    ctx.counters[C + "rejected"] += 1
    return None


def _parse(vocab: Any, answer: Any) -> int | None:
    try:
        action = vocab.parse(answer)
    except (InvalidAction, ValueError, TypeError, KeyError, OverflowError):
        return None
    try:
        return int(np.asarray(action).item())
    except (TypeError, ValueError):
        return None


def _words(vocab: Any, action: int) -> str:
    describe = getattr(vocab, "describe_action", None)
    return f"action {action} ({describe(action)})" if describe is not None else f"action {action}"

"""DG — demonstration generation: LLM-written instruction sequences, executed into expert trajectories.

Round 0 (``generate_demonstrations``, before training): for each of ``episodes`` demonstration
episodes the LLM reads the environment (text + exact JSON: the road graph with free-flow times, every
agent's start, goal and departure) and writes one instruction sequence for the whole team, items
``[Command, Parameter, AgentID]`` (``[MoveTo, Intersection_5, Agent_3]``). The adapter's plan executor
drives the episode by it (``rollout_plan``; step by step with ``execute_plan`` for adapters without
one) and each agent's (obs, action, reward) become that agent's :class:`~guidedrl.Demonstrations`.

What goes wrong is counted (``ctx.counters["leed/..."]``) and logged, never raised:

- no usable plan (the LLM layer's ``validate_plan`` rejected every answer, the call failed, a budget
  ran out): ``leed/plans_failed``, the episode gets no demonstrations this round;
- an invalid item (malformed, unknown command / intersection / agent, non-adjacent move, beyond the
  longest accepted plan): rejected by the executor with its reason, ``leed/items_rejected``; the rest
  of the plan runs;
- a plan that deadlocks (every vehicle on its way waiting where its route ends) or times out (the
  horizon): the rollout is cut, ``leed/plans_cut`` (``leed/plans_deadlocked``), its stuck agents
  ``leed/agents_stuck``.

**Prompt refinement** (:func:`refine`): every ``refine_every`` training iterations the same episodes
are planned again, the prompt carrying feedback from the environment — the rejected instructions and
why, the cut and the stuck agents, every agent's travel time, and the agents' own recent trajectories
(the RL policy's) beside the expert's — and LEED's part of ``ctx.demos`` is replaced. The refresh
runs from the ``identify_critical_states`` hook, which the epoch loop calls between collection and
update with the finished episodes (the agents' own recent trajectories), never inside a gradient step.
Validity and demo return of every round are in ``ctx.state["leed"]``, in ``leed_rounds.json`` in
the run directory, in TensorBoard (``leed/round_validity``, ``leed/round_demo_return``) and, for the
first round and the kept set, in the summary's counters (``validity_first`` / ``validity_last``,
``demo_return_first`` / ``demo_return_last``).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from guidedrl.errors import ConfigError
from guidedrl.types import Demonstrations

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl_leed.config import LeedConfig
    from guidedrl_leed.state import LeedState

log = logging.getLogger("guidedrl.leed")


@attrs.frozen(kw_only=True)
class PlanResult:
    """One demonstration episode of one round."""

    episode: int
    ok: bool
    """Whether the LLM gave a plan at all."""
    items: int = 0
    rejected: list[tuple[str, str]] = attrs.field(factory=list)
    stuck: dict[str, str] = attrs.field(factory=dict)
    cut: str | None = None
    team_return: float = float("nan")
    arrived: int = 0
    n_agents: int = 0
    travel_times: dict[str, int] = attrs.field(factory=dict)
    demos: list[Demonstrations] = attrs.field(factory=list)

    @property
    def validity(self) -> float:
        if not self.ok or not self.items:
            return 0.0
        return max(0.0, 1.0 - len(self.rejected) / self.items)

    @property
    def score(self) -> tuple[float, float]:
        return (self.validity, self.team_return if self.ok else -np.inf)


def needs(adapter: Any) -> None:
    """Fail early, naming what is missing, when the env cannot take LEED's plans."""
    missing = [n for n in ("describe", "execute_plan") if not hasattr(adapter, n)]
    if missing or not getattr(adapter, "multi_agent", False):
        raise ConfigError(
            f"LEED needs a multi-agent env adapter with describe() and a plan executor (execute_plan, ideally "
            f"rollout_plan); {getattr(adapter, 'env_id', adapter)!r} lacks {missing or ['multi_agent']}. "
            "Use e.g. traffic:grid4x4-v0 (guidedrl-env-traffic) or mpe2:simple_spread-v3."
        )


def episode_seed(ctx: RunContext, cfg: LeedConfig, k: int) -> int:
    return cfg.seed_offset + 1000 * int(ctx.config.seed) + k


# -- one plan, one episode --------------------------------------------------------------------------


def _rollout_steps(adapter: Any, env: Any, plan: Any, seed: int) -> Any:
    """For adapters without ``rollout_plan``: run ``plan`` step by step with ``execute_plan``."""
    obs, infos = env.reset(seed=seed)
    rec: dict[str, dict[str, list]] = {}
    rejected: dict[str, tuple[str, str]] = {}
    stuck: dict[str, str] = {}
    total, cut = 0.0, None
    while env.agents:
        state = adapter.describe(obs, infos).state
        acts, rej = adapter.execute_plan(plan, state)
        for item, why in rej:
            rejected.setdefault(f"{item!r:.80}|{why}", (f"{item!r:.80}", why))
        stuck_fn = getattr(adapter, "stuck_agents", None)
        if stuck_fn is not None:
            now = stuck_fn(plan, state)
            for a, why in now.items():
                stuck.setdefault(a, why)
            if now and all(a in now for a in env.agents):
                cut = "deadlock: " + "; ".join(now.values())
                break
        step = {a: acts.get(a, 0) for a in env.agents}
        nobs, rew, term, trunc, infos = env.step(step)
        for a in step:
            r = rec.setdefault(a, {k: [] for k in ("obs", "act", "rew", "obs_next", "term", "trunc")})
            r["obs"].append(np.asarray(obs[a], dtype=np.float32))
            r["act"].append(int(step[a]))
            r["rew"].append(float(rew.get(a, 0.0)))
            r["obs_next"].append(np.asarray(nobs.get(a, obs[a]), dtype=np.float32))
            r["term"].append(bool(term.get(a, False)))
            r["trunc"].append(bool(trunc.get(a, False)))
        total += float(sum(rew.values()))
        obs = nobs
    body = plan.get("instructions") if isinstance(plan, dict) else plan
    demos = [
        Demonstrations(obs=np.stack(r["obs"]), act=np.asarray(r["act"], dtype=np.int64), rew=np.asarray(r["rew"], dtype=np.float32),
                       obs_next=np.stack(r["obs_next"]), terminated=np.asarray(r["term"]), truncated=np.asarray(r["trunc"]), agent=a)
        for a, r in rec.items()
    ]
    return {
        "demonstrations": demos, "items": len(body) if isinstance(body, (list, tuple)) else 1,
        "rejected": list(rejected.values()), "stuck": stuck, "cut": cut, "team_return": total,
        "arrived": None, "travel_times": {},
    }


def execute(adapter: Any, env: Any, plan: Any, seed: int) -> dict[str, Any]:
    """Drive one episode by ``plan``; any input is accepted (the executor rejects what is malformed)."""
    if hasattr(adapter, "rollout_plan"):
        r = adapter.rollout_plan(plan, seed=seed, env=env)
        return {
            "demonstrations": r.demonstrations, "items": r.items, "rejected": list(r.rejected), "stuck": dict(r.stuck),
            "cut": r.cut, "team_return": float(r.team_return), "arrived": r.arrived, "travel_times": dict(r.travel_times),
        }
    return _rollout_steps(adapter, env, plan, seed)


def plan_episode(ctx: RunContext, cfg: LeedConfig, env: Any, k: int, feedback: str | None, round_no: int) -> PlanResult:
    """Ask the LLM for episode ``k``'s plan (with ``feedback`` when refining) and execute it."""
    adapter = ctx.adapter
    seed = episode_seed(ctx, cfg, k)
    obs, infos = env.reset(seed=seed)
    plan = ctx.llm.instructions(obs, infos, history=feedback)
    ctx.counters["leed/plans"] += 1
    n_agents = len(getattr(env, "possible_agents", []) or [])
    if plan is None:
        ctx.counters["leed/plans_failed"] += 1
        log.info("LEED round %d episode %d: the LLM gave no usable plan (invalid answers, failure or budget)", round_no, k)
        return PlanResult(episode=k, ok=False, n_agents=n_agents)
    try:
        out = execute(adapter, env, plan, seed)
    except Exception as exc:  # noqa: BLE001 - an adapter that chokes on a hostile plan must not end the run
        ctx.counters["leed/plans_failed"] += 1
        log.warning("LEED round %d episode %d: the plan executor raised %s: %s; plan skipped", round_no, k, type(exc).__name__, exc)
        return PlanResult(episode=k, ok=False, n_agents=n_agents)
    rejected = [(str(item)[:120], str(why)[:240]) for item, why in out["rejected"]]
    ctx.counters["leed/items"] += int(out["items"])
    ctx.counters["leed/items_rejected"] += len(rejected)
    ctx.counters["leed/agents_stuck"] += len(out["stuck"])
    if out["cut"]:
        ctx.counters["leed/plans_cut"] += 1
        if str(out["cut"]).startswith("deadlock"):
            ctx.counters["leed/plans_deadlocked"] += 1
    for item, why in rejected[:5]:
        log.info("LEED round %d episode %d: rejected %s: %s", round_no, k, item, why)
    if out["cut"]:
        log.info("LEED round %d episode %d: %s", round_no, k, out["cut"])
    arrived = out["arrived"] if out["arrived"] is not None else n_agents
    keep = set(out["travel_times"]) if cfg.keep == "arrived" and out["arrived"] is not None else None
    res = PlanResult(
        episode=k, ok=True, items=int(out["items"]), rejected=rejected, stuck=dict(out["stuck"]), cut=out["cut"],
        team_return=float(out["team_return"]), arrived=int(arrived), n_agents=n_agents, travel_times=out["travel_times"],
    )
    meta = {
        "leed_episode": k, "round": round_no, "validity": res.validity, "team_return": res.team_return,
        "cut": res.cut, "pretrain_steps": cfg.pretrain_steps, "llm_backend": ctx.config.llm.backend,
    }
    demos = [attrs.evolve(d, meta=meta) for d in out["demonstrations"] if len(d) and (keep is None or d.agent in keep)]
    return attrs.evolve(res, demos=demos)


# -- rounds -------------------------------------------------------------------------------------


def run_round(
    ctx: RunContext, cfg: LeedConfig, st: LeedState, *, name: str, round_no: int, extra: str = "",
) -> list[Demonstrations]:
    """Plan every demonstration episode (after round 0 with its feedback, plus ``extra``); returns the kept set."""

    def feedback(k: int) -> str | None:
        if round_no == 0:
            return None
        return "\n".join(t for t in (st.feedback.get(k, ""), extra) if t) or None

    env = ctx.make_env()
    try:
        results = [plan_episode(ctx, cfg, env, k, feedback(k), round_no) for k in range(cfg.episodes)]
    finally:
        env.close()
    kept_by_episode: dict[int, list[Demonstrations]] = {}
    if round_no > 0:  # what the previous rounds kept, per episode
        for d in ctx.demos:
            if d.source == name and "leed_episode" in d.meta:
                kept_by_episode.setdefault(int(d.meta["leed_episode"]), []).append(d)
    for res in results:
        prev = st.best.get(res.episode)
        better = prev is None or not cfg.keep_best or res.score > (float(prev["validity"]), float(prev["team_return"]))
        if better and res.ok:
            kept_by_episode[res.episode] = [attrs.evolve(d, source=name) for d in res.demos]
            st.best[res.episode] = {"validity": res.validity, "team_return": res.team_return, "round": round_no}
            st.feedback[res.episode] = describe_outcome(res)
        elif prev is None:  # no plan at all yet for this episode
            st.feedback[res.episode] = "Your previous answer for this episode gave no usable plan (invalid or missing)."
    kept = [d for k in sorted(kept_by_episode) for d in kept_by_episode[k]]
    asked = [r for r in results if r.ok]
    row = {
        "round": round_no, "iteration": st.iteration, "env_steps": int(ctx.env_steps),
        "plans": len(results), "plans_failed": sum(not r.ok for r in results),
        "validity": float(np.mean([r.validity for r in results])) if results else 0.0,
        "demo_return": float(np.mean([r.team_return for r in asked])) if asked else float("nan"),
        "arrival_rate": float(np.mean([r.arrived / max(r.n_agents, 1) for r in asked])) if asked else 0.0,
        "plans_cut": sum(bool(r.cut) for r in asked),
        "kept_validity": float(np.mean([b["validity"] for b in st.best.values()])) if st.best else 0.0,
        "kept_demo_return": float(np.mean([b["team_return"] for b in st.best.values()])) if st.best else float("nan"),
        "demo_transitions": int(sum(len(d) for d in kept)),
    }
    st.rounds.append(row)
    first = st.rounds[0]
    ctx.counters["leed/demo_transitions"] = row["demo_transitions"]
    ctx.counters["leed/validity_first"] = round(first["validity"], 4)
    ctx.counters["leed/validity_last"] = round(row["kept_validity"], 4)
    if np.isfinite(first["demo_return"]):
        ctx.counters["leed/demo_return_first"] = round(first["demo_return"], 4)
    if np.isfinite(row["kept_demo_return"]):
        ctx.counters["leed/demo_return_last"] = round(row["kept_demo_return"], 4)
    for key in ("validity", "demo_return", "kept_validity", "kept_demo_return", "arrival_rate"):
        if np.isfinite(row[key]):
            ctx.log(f"leed/round_{key}", row[key])
    run_dir = getattr(ctx, "run_dir", None)
    if run_dir is not None:  # every round so far, rewritten whole (a resumed run's file matches its state)
        (run_dir / "leed_rounds.json").write_text(json.dumps(st.rounds, indent=1, default=float))
    log.info(
        "LEED DG round %d: %d plans (%d failed), validity %.2f, demo return %.2f; kept set validity %.2f, return %.2f, %d transitions",
        round_no, row["plans"], row["plans_failed"], row["validity"], row["demo_return"], row["kept_validity"],
        row["kept_demo_return"], row["demo_transitions"],
    )
    st.demo_version += 1
    return kept


def generate(ctx: RunContext, cfg: LeedConfig, st: LeedState, *, name: str) -> list[Demonstrations]:
    """Round 0: the demonstrations handed to the core (which tags them and adds them to ``ctx.demos``)."""
    needs(ctx.adapter)
    ctx.require_adapter(name)
    return run_round(ctx, cfg, st, name=name, round_no=0)


def refine(ctx: RunContext, cfg: LeedConfig, st: LeedState, *, name: str) -> bool:
    """A refinement round if one is due; replaces LEED's entries of ``ctx.demos``. Returns whether it ran."""
    if cfg.refine_every <= 0 or st.refinements >= cfg.max_refinements or not st.rounds:
        return False
    if st.iteration - st.last_refine_iteration < cfg.refine_every:
        return False
    st.last_refine_iteration = st.iteration
    st.refinements += 1
    ctx.counters["leed/refinements"] += 1
    own = own_trajectories(ctx, cfg, st, name=name)
    kept = run_round(ctx, cfg, st, name=name, round_no=st.refinements, extra=own)
    ctx.demos[:] = [d for d in ctx.demos if d.source != name] + kept
    return True


# -- feedback ----------------------------------------------------------------------------------


def describe_outcome(res: PlanResult) -> str:
    """What the environment said about a plan, for the next prompt (bounded)."""
    parts = [
        f"Feedback on your previous plan for this episode: {res.items} instructions, {len(res.rejected)} rejected "
        f"(validity {res.validity:.2f}); team return {res.team_return:.2f}, {res.arrived} of {res.n_agents} agents arrived."
    ]
    if res.rejected:
        parts.append("Rejected instructions: " + "; ".join(f"{i} ({why})" for i, why in res.rejected[:8]) + ".")
    if res.cut:
        parts.append(f"The rollout was cut: {res.cut[:300]}.")
    if res.stuck:
        parts.append("Agents left stuck: " + "; ".join(list(res.stuck.values())[:6]) + ".")
    if res.travel_times:
        tt = sorted(res.travel_times.items(), key=lambda kv: -kv[1])[:8]
        parts.append("Travel times (slowest first): " + ", ".join(f"{a} {t} steps" for a, t in tt) + ".")
    return "\n".join(parts)


def own_trajectories(ctx: RunContext, cfg: LeedConfig, st: LeedState, *, name: str) -> str:
    """The agents' own recent trajectories beside the expert's, as text (return and length)."""
    if not st.recent_returns or cfg.feedback_agents == 0:
        return ""
    expert: dict[str, list[tuple[float, int]]] = {}
    for d in ctx.demos:
        if d.source == name and d.agent is not None:
            expert.setdefault(d.agent, []).append((float(np.sum(d.rew)), len(d)))
    lines = []
    for a in sorted(st.recent_returns)[: cfg.feedback_agents]:
        rets = list(st.recent_returns[a])
        lens = [len(x) for x in st.recent.get(a, [])]
        own = f"own return {np.mean(rets):.2f} over {np.mean(lens):.0f} steps" if lens else f"own return {np.mean(rets):.2f}"
        ex = expert.get(a)
        ex_text = f"expert {np.mean([r for r, _ in ex]):.2f} over {np.mean([n for _, n in ex]):.0f} steps" if ex else "no expert trajectory"
        lines.append(f"- {a}: {own}; {ex_text}")
    return "The agents' own recent trajectories (the learning policy) beside the expert's:\n" + "\n".join(lines)

"""Phase 1 — LLM-generated coordination strategies, executed offline as expert demonstrations.

Every ``replan_every`` steps of a demonstration episode the LLM reads the shop floor (text + exact
JSON) and the rolling coordination history and proposes per-agent assignments. The plan is repaired
(:func:`~guidedrl_lcil.coordination.resolve_conflicts`) or rejected, executed by the env's plan
executor until the next plan, and every agent's (obs, action, reward) is recorded in the agents' own
format. Counters: ``lcil/plans_ok``, ``lcil/plans_repaired``, ``lcil/plans_rejected``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from guidedrl.envs import check_adapter
from guidedrl.errors import AdapterError
from guidedrl.types import Demonstrations
from guidedrl_lcil.coordination import CoordinationHistory, resolve_conflicts

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl_lcil import LCIL

log = logging.getLogger("guidedrl.lcil")
LCIL_REQUIRES = ("describe", "plan_executor")


def _needs(adapter: Any) -> None:
    """The start-up check (``LCIL.requires``) plus LCIL's own: the adapter is multi-agent."""
    check_adapter(adapter, {"lcil": LCIL_REQUIRES})
    if not getattr(adapter, "multi_agent", False):
        raise AdapterError(
            f"LCIL needs a multi-agent adapter; {adapter!r} is single-agent. The factory envs "
            "(guidedrl-env-factory) are multi-agent and execute plans."
        )


def judge_plan(
    plan: list[dict[str, Any]] | None, state: dict[str, Any], *, adapter: Any, agents: list[str],
    previous: dict[str, dict[str, Any]] | None, max_repair_frac: float,
) -> tuple[str, list[dict[str, Any]] | None, list[str]]:
    """``("ok" | "repaired" | "rejected", plan to execute or None, reasons)``."""
    if plan is None:
        return "rejected", None, ["the LLM gave no valid plan (invalid answer, failure or budget)"]
    fixed, repairs = resolve_conflicts(plan, state, adapter=adapter, agents=agents, previous=previous)
    if not repairs:
        return "ok", fixed, []
    if len(repairs) > max_repair_frac * len(agents):
        return "rejected", None, [f"{len(repairs)} of {len(agents)} instructions needed repair: " + "; ".join(repairs)]
    return "repaired", fixed, repairs


def collect_demonstrations(ctx: RunContext, method: LCIL) -> list[Demonstrations]:
    """Run ``episodes`` LLM-coordinated episodes; one :class:`Demonstrations` per agent."""
    cfg = method.config
    adapter = ctx.adapter
    _needs(adapter)
    env = ctx.make_env()
    agents = list(env.possible_agents)
    rec: dict[str, dict[str, list]] = {a: {k: [] for k in ("obs", "act", "rew", "obs_next", "term", "trunc")} for a in agents}
    history = CoordinationHistory(cfg.history)
    counts = {"ok": 0, "repaired": 0, "rejected": 0}
    returns, completion = [], []
    for ep in range(cfg.episodes):
        observations, infos = env.reset(seed=cfg.seed_offset + 1000 * ctx.config.seed + ep)
        history.clear()
        current: list[dict[str, Any]] | None = None
        ep_ret, t = 0.0, 0
        last_repairs: list[str] = []
        window_rew, window_conf = 0.0, 0.0
        while env.agents:
            state = adapter.describe(observations, infos).state
            if t % cfg.replan_every == 0:
                if t > 0 and current is not None:
                    history.add(t - cfg.replan_every, current, last_repairs,
                                f"team reward {window_rew:+.2f}, conflicts {int(window_conf)}")
                window_rew, window_conf = 0.0, 0.0
                raw = ctx.llm.instructions(observations, infos, history=history.text())
                previous = {item["agent"]: item for item in current} if current else None
                verdict, plan, reasons = judge_plan(
                    raw, state, adapter=adapter, agents=agents, previous=previous, max_repair_frac=cfg.max_repair_frac,
                )
                counts[verdict] += 1
                ctx.counters[f"lcil/plans_{verdict}"] += 1
                if verdict != "ok":
                    ctx.state["lcil"].setdefault("log", []).append({"episode": ep, "t": t, "verdict": verdict, "reasons": reasons})
                    log.info("LCIL plan at episode %d step %d %s: %s", ep, t, verdict, "; ".join(reasons))
                if plan is not None:
                    current = plan
                last_repairs = reasons if verdict != "rejected" else ["plan rejected: " + "; ".join(reasons)]
                if current is None:
                    current = [{"command": "rest", "parameter": None, "agent": a} for a in agents]
            actions, rejected = adapter.execute_plan(current, state)
            ctx.counters["lcil/items_rejected"] += len(rejected)
            live = [a for a in agents if a in observations]  # agents may be absent (not departed, arrived)
            obs_next, rew, term, trunc, infos = env.step({a: actions[a] for a in live})
            for a in live:
                r = rec[a]
                r["obs"].append(np.asarray(observations[a], dtype=np.float32))
                r["act"].append(actions[a])
                r["rew"].append(rew.get(a, 0.0))
                r["obs_next"].append(np.asarray(obs_next.get(a, observations[a]), dtype=np.float32))
                r["term"].append(bool(term.get(a, False)))
                r["trunc"].append(bool(trunc.get(a, False)))
            step_rew = float(sum(rew.values()))
            ep_ret += step_rew
            window_rew += step_rew
            metrics = next((i["metrics"] for i in infos.values() if isinstance(i, dict) and "metrics" in i), {})
            window_conf = float(metrics.get("conflicts", 0.0))
            observations = obs_next
            t += 1
        returns.append(ep_ret)
        if "task_completion" in metrics:
            completion.append(float(metrics["task_completion"]))
    env.close()
    meta = {
        "episodes": cfg.episodes,
        "plans": dict(counts),
        "mean_return": float(np.mean(returns)) if returns else 0.0,
        "mean_task_completion": float(np.mean(completion)) if completion else None,
        "pretrain_steps": cfg.imitation_steps,
        "llm_backend": ctx.config.llm.backend,
    }
    ctx.state["lcil"]["demo_return"] = meta["mean_return"]
    log.info("LCIL phase 1: %d episodes, mean team return %.2f, plans %s", cfg.episodes, meta["mean_return"], counts)
    return [
        Demonstrations(
            obs=np.stack(r["obs"]), act=np.asarray(r["act"], dtype=np.int64), rew=np.asarray(r["rew"], dtype=np.float32),
            obs_next=np.stack(r["obs_next"]), terminated=np.asarray(r["term"]), truncated=np.asarray(r["trunc"]),
            agent=a, meta=meta,
        )
        for a, r in rec.items()
        if r["obs"]
    ]

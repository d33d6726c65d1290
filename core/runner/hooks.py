"""Calling the guidance hooks and combining their results, the way DESIGN.md states.

Both runners (single-agent over Tianshou, multi-agent over PettingZoo) go through these functions,
so the combination rules live in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import torch

from guidedrl.types import ActionAdvice, CriticalState, Demonstrations, Episode, PolicyUpdate

if TYPE_CHECKING:
    from guidedrl.context import RunContext


class HookSet:
    """Which guidance hooks the run's plugins implement (so the hot path skips the others)."""

    def __init__(self, pm: Any) -> None:
        self.pm = pm

        def has(name: str) -> bool:
            return bool(getattr(pm.hook, name).get_hookimpls())

        self.demonstrations = has("generate_demonstrations")
        self.critical_states = has("identify_critical_states")
        self.refine_action = has("refine_action")
        self.shape_reward = has("shape_reward")
        self.update_policy = has("update_policy")


def _results_with_names(
    pm: Any, hook_name: str, *, firstresult: bool = False, **kwargs: Any
) -> list[tuple[str, Any]]:
    """Call a hook's implementations in pluggy's order and pair each non-None result with its plugin.

    pluggy's own call returns bare results; the core needs to know which plugin produced each (to
    tag demonstrations, name loss terms, count advice), so it walks the implementations itself, with
    pluggy's ordering (last registered first, ``tryfirst``/``trylast`` honoured) and argument
    filtering (an implementation may accept fewer arguments than the spec).
    """
    out = []
    trace = getattr(pm, "trace_hooks", False)
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        result = impl.function(**{name: kwargs[name] for name in impl.argnames})
        if trace:
            _trace(hook_name, impl.plugin_name, result)
        if result is not None:
            out.append((impl.plugin_name, result))
            if firstresult:
                break
    return out


def _trace(hook_name: str, plugin: str, result: Any) -> None:
    import sys

    shown = type(result).__name__ if result is not None else "None"
    if isinstance(result, (list, tuple, np.ndarray)):
        shown += f"[{len(result)}]"
    sys.stderr.write(f"guidedrl-trace: {hook_name} <- {plugin}: {shown}\n")


def generate_demonstrations(ctx: RunContext) -> list[Demonstrations]:
    """All plugins' demonstrations, each tagged with its plugin, appended to ``ctx.demos``."""
    demos: list[Demonstrations] = []
    for name, result in _results_with_names(ctx.pm, "generate_demonstrations", ctx=ctx):
        items = result if isinstance(result, (list, tuple)) else [result]
        for item in items:
            if not isinstance(item, Demonstrations):
                raise TypeError(
                    f"plugin {name!r}: generate_demonstrations must return Demonstrations (or a list "
                    f"of them), got {type(item).__name__}"
                )
            demos.append(attrs.evolve(item, source=item.source or name))
    ctx.demos.extend(demos)
    ctx.counters["demo_transitions"] += sum(len(d) for d in demos)
    return demos


def pretrain_steps(ctx: RunContext) -> int:
    """Gradient steps of offline imitation before RL: ``pretrain.steps`` when set, else the most any
    demonstration set asks for (``Demonstrations.meta["pretrain_steps"]``, e.g. LCIL's phase 2)."""
    if ctx.config.pretrain.steps > 0:
        return ctx.config.pretrain.steps
    return max([int(d.meta.get("pretrain_steps", 0)) for d in ctx.demos] or [0])


def identify_critical_states(ctx: RunContext, episodes: list[Episode]) -> list[CriticalState]:
    """The union of all plugins' critical states; the same (episode, t) keeps the max score."""
    merged: dict[tuple[int, int], CriticalState] = {}
    for name, result in _results_with_names(
        ctx.pm, "identify_critical_states", ctx=ctx, episodes=episodes
    ):
        for cs in result:
            cs = attrs.evolve(cs, source=cs.source or name)
            key = (cs.episode, cs.t)
            if key not in merged or cs.score > merged[key].score:
                merged[key] = cs
    found = sorted(merged.values(), key=lambda c: (c.episode, c.t))
    ctx.critical_states.extend(found)
    ctx.counters["critical_states"] += len(found)
    return found


def refine_action(
    ctx: RunContext, obs: np.ndarray, act: np.ndarray, info: Any, env_ids: np.ndarray, agent: str | None = None
) -> ActionAdvice | None:
    """The first non-None advice in the user's method order (pluggy ``firstresult``)."""
    results = _results_with_names(
        ctx.pm, "refine_action", firstresult=True, ctx=ctx, obs=obs, act=act, info=info, env_ids=env_ids, agent=agent
    )
    if not results:
        return None
    name, advice = results[0]
    if not isinstance(advice, ActionAdvice):
        raise TypeError(f"refine_action must return ActionAdvice or None, got {type(advice).__name__}")
    mask = np.asarray(advice.mask, dtype=bool).reshape(-1)
    if mask.shape[0] != len(act):
        raise ValueError(f"refine_action returned a mask of {mask.shape[0]} entries for {len(act)} envs")
    ctx.counters["advised_steps"] += int(mask.sum())
    ctx.counters[f"{name}/advised_steps"] += int(mask.sum())
    return attrs.evolve(advice, mask=mask, source=advice.source or name)


def shape_reward(ctx: RunContext, batch: Any, agent: str | None = None) -> np.ndarray | None:
    """The sum of all plugins' bonuses for a batch, or ``None`` when nobody shaped."""
    total: np.ndarray | None = None
    n = len(batch)
    for name, bonus in _results_with_names(ctx.pm, "shape_reward", ctx=ctx, batch=batch, agent=agent):
        bonus = np.asarray(bonus, dtype=np.float64).reshape(-1)
        if bonus.shape[0] != n:
            raise ValueError(f"plugin {name!r}: shape_reward returned {bonus.shape[0]} bonuses for {n} transitions")
        total = bonus if total is None else total + bonus
        ctx.counters[f"{name}/shaped_transitions"] += int(np.count_nonzero(bonus))
    return total


def update_policy(
    ctx: RunContext, batch: Any, algorithm: Any, agent: str | None = None
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Sum of all plugins' extra loss terms, and their stats under ``methods/<plugin>/``."""
    loss: torch.Tensor | None = None
    stats: dict[str, float] = {}
    for name, upd in _results_with_names(
        ctx.pm, "update_policy", ctx=ctx, batch=batch, algorithm=algorithm, agent=agent
    ):
        if not isinstance(upd, PolicyUpdate):
            raise TypeError(f"plugin {name!r}: update_policy must return PolicyUpdate or None, got {type(upd).__name__}")
        for key, term in upd.losses.items():
            loss = term if loss is None else loss + term
            stats[f"methods/{name}/{key}"] = float(term.detach())
        for key, value in upd.stats.items():
            stats[f"methods/{name}/{key}"] = float(value)
    return loss, stats

"""Calling the guidance hooks and combining their results, the way DESIGN.md states.

Both runners (single-agent over Tianshou, multi-agent over PettingZoo) go through these functions,
so the combination rules live in one place, and so does the checking of what plugins hand back:
every result is validated here, at the hook boundary, before the core uses it (shape, dtype,
finiteness, legality against the action space). A hook that raises, or returns something unusable,
stops the run with a :class:`~guidedrl.errors.HookError` naming the plugin and the hook, and so does
a training loss that became non-finite after a method's bonus or loss term (:func:`check_losses`).
There is no mode that disables a failing method and trains on: a guided run that silently became an
unguided one would report results for a method that did not run (docs/hooks.md, "What the core
validates").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import math
import sys
import traceback

import attrs
import gymnasium as gym
import numpy as np
import torch

from guidedrl.errors import GuidedRLError, HookError
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
        try:
            result = impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as exc:
            raise _named(exc, impl.plugin_name, hook_name, trace) from exc
        if trace:
            _trace(hook_name, impl.plugin_name, result)
        if result is not None:
            out.append((impl.plugin_name, result))
            if firstresult:
                break
    return out


def _named(exc: Exception, plugin: str, hook_name: str, trace: bool) -> Exception:
    """The exception a hook raised, re-raised so that it names the plugin and the hook.

    A user-facing error (:class:`GuidedRLError`, e.g. a method's ``ConfigError``) keeps its type and
    gains the prefix; anything else (a bug in the plugin) becomes a :class:`HookError` chained to
    the original, whose traceback ``GUIDEDRL_TRACE_PLUGINS=1`` prints.
    """
    if trace:
        sys.stderr.write(f"guidedrl-trace: {hook_name} <- {plugin}: raised\n")
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, HookError):
        return exc
    if isinstance(exc, GuidedRLError):
        exc.args = (f"method {plugin!r}, hook {hook_name!r}: {exc}", *exc.args[1:])
        return exc
    hint = "" if trace else " (GUIDEDRL_TRACE_PLUGINS=1 prints the traceback)"
    return HookError(plugin, hook_name, f"raised {type(exc).__name__}: {exc}{hint}")


def _trace(hook_name: str, plugin: str, result: Any) -> None:
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
                raise HookError(
                    name, "generate_demonstrations",
                    f"must return Demonstrations (or a list of them) or None, got {type(item).__name__}",
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
        if not isinstance(result, (list, tuple)):
            raise HookError(name, "identify_critical_states", f"must return a list of CriticalState or None, got {type(result).__name__}")
        for cs in result:
            _check_critical_state(name, cs, episodes)
            cs = attrs.evolve(cs, source=cs.source or name)
            key = (cs.episode, cs.t)
            if key not in merged or cs.score > merged[key].score:
                merged[key] = cs
    found = sorted(merged.values(), key=lambda c: (c.episode, c.t))
    ctx.critical_states.extend(found)
    ctx.counters["critical_states"] += len(found)
    return found


def _check_critical_state(plugin: str, cs: Any, episodes: list[Episode]) -> None:
    def fail(msg: str) -> None:
        raise HookError(plugin, "identify_critical_states", msg)

    if not isinstance(cs, CriticalState):
        fail(f"must return CriticalState items, got {type(cs).__name__}")
    if not isinstance(cs.episode, (int, np.integer)) or not 0 <= cs.episode < len(episodes):
        fail(f"CriticalState.episode = {cs.episode!r} does not index the {len(episodes)} episodes it was given")
    if not isinstance(cs.t, (int, np.integer)) or not 0 <= cs.t < len(episodes[cs.episode]):
        fail(f"CriticalState.t = {cs.t!r} is outside episode {cs.episode} ({len(episodes[cs.episode])} steps)")
    try:
        score = float(cs.score)
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score):
        fail(f"CriticalState.score = {cs.score!r}; scores must be finite numbers")


def refine_action(
    ctx: RunContext,
    obs: np.ndarray,
    act: np.ndarray,
    info: Any,
    env_ids: np.ndarray,
    agent: str | None = None,
    action_space: gym.Space | None = None,
) -> ActionAdvice | None:
    """The first non-None advice in the user's method order (pluggy ``firstresult``), validated.

    ``advice.act`` comes back with the shape of ``act``; the advised rows (``advice.mask``) are
    checked against ``action_space`` (the env's, in env space) when it is given.
    """
    results = _results_with_names(
        ctx.pm, "refine_action", firstresult=True, ctx=ctx, obs=obs, act=act, info=info, env_ids=env_ids, agent=agent
    )
    if not results:
        return None
    name, advice = results[0]
    if not isinstance(advice, ActionAdvice):
        raise HookError(name, "refine_action", f"must return ActionAdvice or None, got {type(advice).__name__}")
    act = np.asarray(act)
    n = len(act)
    mask = _as_mask(name, advice.mask, n)
    advised = _as_array(name, "refine_action", advice.act, "ActionAdvice.act")
    if advised.shape != act.shape:
        raise HookError(
            name, "refine_action",
            f"ActionAdvice.act has shape {advised.shape}; it must have the shape of the `act` it was given "
            f"{act.shape} (one action per env, unadvised rows ignored)",
        )
    if mask.any():
        _check_actions(name, advised[mask], action_space, agent)
    ctx.counters["advised_steps"] += int(mask.sum())
    ctx.counters[f"{name}/advised_steps"] += int(mask.sum())
    return attrs.evolve(advice, act=advised, mask=mask, source=advice.source or name)


def _as_array(plugin: str, hook: str, value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise HookError(plugin, hook, f"{what} is not an array ({type(exc).__name__}: {exc})") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise HookError(plugin, hook, f"{what} must hold numbers, got dtype {arr.dtype}")
    return arr


def _as_mask(plugin: str, value: Any, n: int) -> np.ndarray:
    mask = _as_array(plugin, "refine_action", value, "ActionAdvice.mask")
    if mask.shape != (n,):
        raise HookError(plugin, "refine_action", f"ActionAdvice.mask has shape {mask.shape}; it must be ({n},), one entry per env")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer) or not np.isin(mask, (0, 1)).all():
            raise HookError(plugin, "refine_action", f"ActionAdvice.mask must be boolean, got dtype {mask.dtype} with values {np.unique(mask)[:5]}")
        mask = mask.astype(bool)
    return mask


def _check_actions(plugin: str, actions: np.ndarray, space: gym.Space | None, agent: str | None) -> None:
    """Advised actions must be legal in the env's action space: integers in range for discrete
    spaces, finite values within the bounds for boxes."""
    who = f" for agent {agent!r}" if agent is not None else ""

    def fail(msg: str) -> None:
        raise HookError(plugin, "refine_action", f"advised an illegal action{who}: {msg}")

    if np.issubdtype(actions.dtype, np.floating) and not np.isfinite(actions).all():
        fail(f"{_nonfinite_text(actions)} (actions must be finite)")
    if space is None:
        return
    if isinstance(space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        if not np.issubdtype(actions.dtype, np.integer):
            fail(f"dtype {actions.dtype}; {type(space).__name__} actions must be integers (e.g. np.int64)")
        if isinstance(space, gym.spaces.Discrete):
            low, high = int(space.start), int(space.start + space.n - 1)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            low, high = np.asarray(space.start), np.asarray(space.start + space.nvec - 1)
        else:
            low, high = 0, 1
        bad = (actions < low) | (actions > high)
        if bad.any():
            fail(f"{actions[bad].reshape(-1)[:5].tolist()} outside {space}")
    elif isinstance(space, gym.spaces.Box):
        if not np.issubdtype(actions.dtype, np.number):
            fail(f"dtype {actions.dtype}; Box actions must be numbers")
        if actions.shape[1:] != space.shape:
            fail(f"each action has shape {actions.shape[1:]}, the action space {space.shape}")
        tol = 1e-6 * np.maximum(1.0, np.abs(np.stack([space.low, space.high])).max(0))
        bad = (actions < space.low - tol) | (actions > space.high + tol)
        if bad.any():
            fail(f"{actions[bad].reshape(-1)[:5].tolist()} outside the bounds of {space}")
    else:
        for a in actions:
            if not space.contains(a):
                fail(f"{a!r} is not in {space}")


def _nonfinite_text(values: np.ndarray) -> str:
    flat = values.reshape(-1)
    nan, inf = int(np.isnan(flat).sum()), int(np.isinf(flat).sum())
    first = int(np.flatnonzero(~np.isfinite(flat))[0])
    parts = [f"{nan} NaN"] * bool(nan) + [f"{inf} inf"] * bool(inf)
    return f"{' and '.join(parts)} (first at index {first}: {flat[first]})"


def shape_reward(ctx: RunContext, batch: Any, agent: str | None = None) -> np.ndarray | None:
    """The sum of all plugins' bonuses for a batch, or ``None`` when nobody shaped.

    Each bonus must be finite numbers of shape ``(len(batch),)``. The largest bonus of each plugin is
    remembered until :func:`begin_update`, so that :func:`check_losses` can name it.
    """
    total: np.ndarray | None = None
    n = len(batch)
    trail = _trail(ctx)
    for name, bonus in _results_with_names(ctx.pm, "shape_reward", ctx=ctx, batch=batch, agent=agent):
        bonus = _as_array(name, "shape_reward", bonus, "the bonus")
        if bonus.shape != (n,):
            got = f"{bonus.shape[0]} bonuses" if bonus.ndim == 1 else f"an array of shape {bonus.shape}"
            raise HookError(
                name, "shape_reward",
                f"returned {got} for {n} transitions; return one bonus per transition, shape ({n},)",
            )
        bonus = bonus.astype(np.float64)
        if not np.isfinite(bonus).all():
            raise HookError(name, "shape_reward", f"returned {_nonfinite_text(bonus)} among {n} bonuses; bonuses must be finite")
        total = bonus if total is None else total + bonus
        ctx.counters[f"{name}/shaped_transitions"] += int(np.count_nonzero(bonus))
        key = (name, "shape_reward")
        trail[key] = max(trail.get(key, 0.0), float(np.abs(bonus).max(initial=0.0)))
    return total


def update_policy(
    ctx: RunContext, batch: Any, algorithm: Any, agent: str | None = None
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """Sum of all plugins' extra loss terms, and their stats under ``methods/<plugin>/``.

    Every loss term must be a finite scalar tensor (it joins the backward pass), every stat a number.
    In multi-agent runs the names carry the agent (``methods/<plugin>/<agent>/<key>``), so the
    per-agent calls of one update do not overwrite each other.
    """
    loss: torch.Tensor | None = None
    stats: dict[str, float] = {}
    trail = _trail(ctx)
    for name, upd in _results_with_names(
        ctx.pm, "update_policy", ctx=ctx, batch=batch, algorithm=algorithm, agent=agent
    ):
        prefix = f"methods/{name}/" if agent is None else f"methods/{name}/{agent}/"
        if not isinstance(upd, PolicyUpdate):
            raise HookError(name, "update_policy", f"must return PolicyUpdate or None, got {type(upd).__name__}")
        for key, term in upd.losses.items():
            if not isinstance(term, torch.Tensor) or term.numel() != 1 or not term.is_floating_point():
                shown = f"a {term.dtype} tensor of shape {tuple(term.shape)}" if isinstance(term, torch.Tensor) else type(term).__name__
                raise HookError(
                    name, "update_policy",
                    f"loss {key!r} is {shown}; loss terms must be scalar float tensors (e.g. `x.mean()`) so they reach the backward pass",
                )
            value = float(term.detach())
            if not math.isfinite(value):
                raise HookError(name, "update_policy", f"loss {key!r} is {value}; loss terms must be finite")
            loss = term if loss is None else loss + term
            stats[f"{prefix}{key}"] = value
            tkey = (name, "update_policy")
            trail[tkey] = max(trail.get(tkey, 0.0), abs(value))
        for key, value in upd.stats.items():
            try:
                stats[f"{prefix}{key}"] = float(value)
            except (TypeError, ValueError) as exc:
                raise HookError(name, "update_policy", f"stat {key!r} is {type(value).__name__}, not a number") from exc
    return loss, stats


# -- the loss-side guard ----------------------------------------------------------------------


def _trail(ctx: RunContext) -> dict[tuple[str, str], float]:
    """Largest |bonus| / |loss term| per (plugin, hook) since the last :func:`begin_update`."""
    return ctx.__dict__.setdefault("_guidedrl_hook_trail", {})


def begin_update(ctx: RunContext, *, keep_bonuses: bool = False) -> None:
    """Forget what methods contributed to the previous update (call before each update).

    ``keep_bonuses``: the bonuses stay in play, because the update learns from transitions whose
    bonuses were stored earlier (the single-agent learner's bonus column, ``guidedrl.guidance``)."""
    trail = _trail(ctx)
    for key in list(trail):
        if not (keep_bonuses and key[1] == "shape_reward"):
            del trail[key]


def check_losses(ctx: RunContext, losses: dict[str, Any]) -> None:
    """Stop the run when a loss of the last update is NaN or infinite, naming the methods whose bonus
    or loss term went into it (their largest magnitude), so no non-finite weights reach a checkpoint.

    ``losses`` maps names to numbers (non-numbers are ignored). Raises :class:`HookError` when a
    method contributed, else :class:`GuidedRLError` (the algorithm diverged on its own).
    """
    bad = {}
    for key, value in losses.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(v):
            bad[key] = v
    if not bad:
        return
    shown = ", ".join(f"{k} = {v}" for k, v in list(bad.items())[:3])
    where = f"at env step {ctx.env_steps}"
    trail = _trail(ctx)
    if trail:
        (plugin, hook), size = max(trail.items(), key=lambda item: item[1])
        what = "bonuses" if hook == "shape_reward" else "loss terms"
        others = [f"{p!r} ({h}, up to {m:.3g})" for (p, h), m in trail.items() if (p, h) != (plugin, hook)]
        also = f"; also in this update: {', '.join(others)}" if others else ""
        raise HookError(
            plugin, hook,
            f"the training loss became non-finite {where} ({shown}) in an update where this method's {what} "
            f"reached {size:.3g}{also}; keep them bounded (the env's own rewards are the scale to stay near)",
        )
    raise GuidedRLError(
        f"the training loss became non-finite {where} ({shown}) with no method's bonus or loss term in the "
        "update; the algorithm diverged (try a lower learning rate)"
    )

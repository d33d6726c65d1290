"""What an env adapter is, as protocols: the one :class:`Adapter` shape (single- and multi-agent),
the optional capabilities a method may need (an action vocabulary, an expert, ``simulate``, a plan
executor), and :func:`check_adapter`, which the core runs at start-up against what the run's
methods declare they need (``requires``), so that a missing piece fails before training, naming
the adapter, the piece and the section of CONTRIBUTING.md to read.

:class:`~guidedrl.envs.EnvAdapter` and :class:`~guidedrl.envs.MultiAgentEnvAdapter` are convenient
implementations of :class:`Adapter`; any object of that shape works.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import attrs

from guidedrl.errors import AdapterError, PluginError

DOCS = "docs/adapters.md"
SECTIONS = {
    "describe": "Describing states",
    "action_vocabulary": "Action vocabularies",
    "expert": "Experts",
    "simulate": "Simulating an action",
    "plan_executor": "Plan executors",
}
"""The heading of docs/adapters.md that documents each capability (errors point at it)."""

CAPABILITIES: dict[str, str] = {
    "describe": "describe(obs, info) -> Description (the state in words plus exact JSON)",
    "action_vocabulary": "an action vocabulary (`vocabulary`: prompt_text(), json_schema(), parse())",
    "expert": "an `expert` (a guidedrl.envs.Expert: act(state) at least)",
    "simulate": "simulate(state, action) -> SimResult (a check of an action before it is used)",
    "plan_executor": "validate_plan(plan) and execute_plan(plan, state) -> PlanStep",
}
"""What a method may list in ``requires``, and what each asks of the adapter."""


@runtime_checkable
class Adapter(Protocol):
    """An environment adapter, single- or multi-agent.

    ``env_id`` is the id users type; ``task`` states goal and termination (it heads every prompt);
    ``multi_agent`` says whether ``make()`` returns a PettingZoo ``ParallelEnv`` (``True``) or a
    Gymnasium ``Env``. ``describe(obs, info)`` takes one observation (single-agent) or the dict of
    every agent's observation (multi-agent). ``expert`` is ``None`` when the adapter has none.
    Optional capabilities are separate protocols: :class:`ActionVocabulary` (as ``vocabulary``),
    :class:`Simulator`, :class:`PlanExecutor`.
    """

    env_id: str
    task: str
    multi_agent: bool

    def make(self, **kwargs: Any) -> Any: ...

    def describe(self, obs: Any, info: dict[str, Any] | None = None) -> Any: ...

    @property
    def expert(self) -> Any: ...


@runtime_checkable
class ActionVocabulary(Protocol):
    """What each action means, for an LLM, and how its answer becomes an action.

    ``prompt_text()`` is the text a prompt carries (bounded in size: never one line per action of a
    huge space, see :class:`~guidedrl.envs.FactoredActions`); ``json_schema()`` the JSON schema of an
    answer; ``parse(value)`` the legal action, or :class:`~guidedrl.envs.InvalidAction` whose message
    says why (it is fed back to the LLM); ``to_json(action)`` an action as the JSON an LLM reads.
    """

    def prompt_text(self) -> str: ...

    def json_schema(self) -> dict[str, Any]: ...

    def parse(self, value: Any) -> Any: ...

    def to_json(self, action: Any) -> Any: ...


@attrs.frozen(kw_only=True)
class SimResult:
    """What a simulator says about taking ``action`` in ``state``, before it is taken.

    ``ok`` is false when the action is illegal or harmful (e.g. Grid2Op's simulated step overloads
    a line); ``reason`` says why in a sentence an LLM can act on (ACE's multi-round actor feeds it
    back); ``reward`` and ``done`` are the simulated step's outcome where the simulator knows them;
    ``info`` holds anything else (overloaded lines, rho, ...).
    """

    ok: bool
    reason: str = ""
    reward: float | None = None
    done: bool | None = None
    info: dict[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class Simulator(Protocol):
    """``simulate(state, action) -> SimResult | None``: a check of an action from a state (the exact
    JSON state of :meth:`describe`) without stepping the real env. ``None`` means the adapter cannot
    simulate that state (the method then uses the action unchecked, or asks again)."""

    def simulate(self, state: dict[str, Any], action: Any) -> SimResult | None: ...


class PlanStep(NamedTuple):
    """One step of a plan: every agent's action, and the plan items rejected in this state, each with
    the reason (``[(item, "station 3 is broken; ...")]``). Unpacks as ``actions, rejected``."""

    actions: dict[str, Any]
    rejected: list[tuple[Any, str]]


@runtime_checkable
class PlanExecutor(Protocol):
    """Turns an LLM's plan into actions, step by step (LEED's ``[Command, Parameter, AgentID]`` items,
    LCIL's per-agent assignments).

    ``validate_plan(plan)`` is stateless: normalised items, or
    :class:`~guidedrl.envs.InvalidAction` naming the first malformed one. ``execute_plan(plan,
    state)`` takes a validated plan and the exact JSON state of the current step and returns a
    :class:`PlanStep`: the joint action, with items that are illegal *in this state* rejected with a
    reason (their agents get a safe default action). A plan stays in force over several steps: call
    ``execute_plan`` again with each new state.
    """

    def validate_plan(self, plan: Any) -> list[Any]: ...

    def execute_plan(self, plan: Sequence[Any], state: dict[str, Any]) -> PlanStep: ...


# -- the start-up check -----------------------------------------------------------------------------


def method_requirements(pm: Any) -> dict[str, tuple[str, ...]]:
    """What each method of a run declares it needs of the adapter: its ``requires`` attribute (a tuple
    of :data:`CAPABILITIES` names; none declared: nothing is checked for it)."""
    out = {}
    for name, plugin in pm.methods().items():
        needs = getattr(plugin, "requires", ())
        if isinstance(needs, str):
            needs = (needs,)
        try:
            needs = tuple(needs)
        except TypeError:
            raise PluginError(f"method {name!r}: `requires` must be a tuple of names from {sorted(CAPABILITIES)}, got {needs!r}") from None
        unknown = [n for n in needs if n not in CAPABILITIES]
        if unknown:
            from guidedrl.errors import did_you_mean

            raise PluginError(
                f"method {name!r} requires {unknown[0]!r}, which is not an adapter capability."
                f"{did_you_mean(str(unknown[0]), CAPABILITIES)} Capabilities: {', '.join(CAPABILITIES)}."
            )
        out[name] = needs
    return out


def check_adapter(adapter: Any, needs: Iterable[str] | Mapping[str, Iterable[str]] = ()) -> None:
    """Check, before training starts, that ``adapter`` has what the run needs.

    ``needs`` is a list of :data:`CAPABILITIES` names, or a mapping method name → names (what
    :func:`method_requirements` returns; errors then name the method). Always checked: the
    :class:`Adapter` basics (``env_id``, ``make``). Raises :class:`~guidedrl.errors.AdapterError`
    naming the adapter, the missing piece and the doc section; builds the action vocabulary once when
    it is needed (so that an adapter whose ``action_vocabulary`` fails, fails now, not at the first
    LLM question thousands of steps later).
    """
    by_method = dict(needs) if isinstance(needs, Mapping) else {"": tuple(needs)}
    name = f"{type(adapter).__name__}({getattr(adapter, 'env_id', '?')!r})"
    if not callable(getattr(adapter, "make", None)) or not isinstance(getattr(adapter, "env_id", None), str):
        raise AdapterError(f"{name} is not an env adapter: it needs `env_id` (str) and `make()` (see {DOCS}, 'The adapter protocol')")
    checked: set[str] = set()
    for method, wanted in by_method.items():
        who = f"method {method!r} needs" if method else "the run needs"
        for need in wanted:
            if need in checked:
                continue
            problem = _missing(adapter, need)
            if problem:
                raise AdapterError(
                    f"{who} {CAPABILITIES.get(need, need)}, but adapter {name} {problem} "
                    f"(see {DOCS}, '{SECTIONS.get(need, 'The start-up check')}')"
                )
            checked.add(need)


def _missing(adapter: Any, need: str) -> str | None:
    """Why ``adapter`` lacks capability ``need`` (``None``: it has it)."""
    from guidedrl.envs.base import EnvAdapter, MultiAgentEnvAdapter, PlainGymAdapter

    if need == "describe":
        if isinstance(adapter, PlainGymAdapter):
            return "is a plain Gymnasium env without a guidedrl adapter: install one that registers this id (`guidedrl envs`) or write one"
        fn = getattr(adapter, "describe", None)
        if not callable(fn):
            return "has no describe()"
        if _is_default(adapter, "describe", (EnvAdapter, MultiAgentEnvAdapter)):
            return "does not override describe()"
        return None
    if need == "action_vocabulary":
        try:
            vocab = getattr(adapter, "vocabulary", None)
        except Exception as exc:  # noqa: BLE001 - any failure of the adapter's own code is reported with its cause
            return f"failed to build its action vocabulary: {type(exc).__name__}: {exc}"
        if vocab is None:
            return "has no `vocabulary`"
        if getattr(adapter, "multi_agent", False):
            return None if callable(getattr(vocab, "prompt_text", None)) else "has a vocabulary without prompt_text()"
        lacking = [m for m in ("prompt_text", "json_schema", "parse", "to_json") if not callable(getattr(vocab, m, None))]
        return f"has a vocabulary ({type(vocab).__name__}) without {', '.join(lacking)}()" if lacking else None
    if need == "expert":
        try:
            expert = adapter.expert
        except Exception as exc:  # noqa: BLE001
            return f"failed to make its expert: {type(exc).__name__}: {exc}"
        if expert is None:
            return "has no expert (its `expert` is None)"
        return None if callable(getattr(expert, "act", None)) or callable(getattr(expert, "plan", None)) else "has an expert without act() or plan()"
    if need == "simulate":
        if not callable(getattr(adapter, "simulate", None)) or _is_default(adapter, "simulate", (EnvAdapter,)):
            return "does not implement simulate(state, action)"
        return None
    if need == "plan_executor":
        lacking = [m for m in ("validate_plan", "execute_plan") if not callable(getattr(adapter, m, None))]
        if lacking:
            return f"has no {' or '.join(m + '()' for m in lacking)}"
        params = _positional(adapter.execute_plan)
        if params is not None and params < 2:
            return "has execute_plan() with the wrong signature: it must be execute_plan(plan, state) -> PlanStep"
        return None
    raise PluginError(f"unknown adapter capability {need!r}; capabilities: {', '.join(CAPABILITIES)}")


def _is_default(adapter: Any, attr: str, bases: tuple[type, ...]) -> bool:
    impl = getattr(type(adapter), attr, None)
    return any(impl is getattr(base, attr, None) for base in bases)


def _positional(fn: Any) -> int | None:
    """How many positional arguments ``fn`` takes (``None``: any number)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def build_vocabulary(adapter: Any, space: Any) -> Any:
    """Call the adapter's ``action_vocabulary``, with the action space when it takes an argument
    (``action_vocabulary(space)``) and without when it takes none (``action_vocabulary()``): both
    spellings are supported."""
    fn = adapter.action_vocabulary
    return fn() if _positional(fn) == 0 else fn(space)

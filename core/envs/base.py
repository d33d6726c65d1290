"""Base classes for environment adapters, action vocabularies and experts."""

from __future__ import annotations

import json
import reprlib
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import gymnasium as gym
import numpy as np

from guidedrl.envs.protocols import ActionVocabulary, SimResult, build_vocabulary
from guidedrl.errors import AdapterError


class InvalidAction(ValueError):
    """An LLM's answer does not name a legal action. The message says why (it is fed back to the LLM)."""


_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlist = _EXCERPT.maxtuple = _EXCERPT.maxdict = 4
_EXCERPT.maxlevel = 2


def excerpt(value: Any) -> str:
    """A bounded excerpt of an LLM's answer (or a piece of it) for an :class:`InvalidAction` reason:
    never the whole of a huge or deeply nested value, never an exception from a hostile ``__repr__``."""
    try:
        return _EXCERPT.repr(value)
    except Exception:  # noqa: BLE001 - a hostile object's __repr__ may raise anything
        return f"<{type(value).__name__}>"


def instruction_fields(item: Any) -> dict[str, Any]:
    """An instruction item ``[Command, Parameter, AgentID]`` (or the object form with those keys) as
    ``{"command", "parameter", "agent"}``, unchecked values; :class:`InvalidAction` for any other shape."""
    if isinstance(item, (list, tuple)):
        if len(item) != 3:
            raise InvalidAction(f"an item must be [Command, Parameter, AgentID], got {len(item)} elements: {excerpt(item)}")
        item = {"command": item[0], "parameter": item[1], "agent": item[2]}
    if not isinstance(item, dict):
        raise InvalidAction(f"an item must be [Command, Parameter, AgentID] or an object, got {excerpt(item)}")
    missing = [k for k in ("command", "parameter", "agent") if k not in item]
    if missing:
        raise InvalidAction(f"item lacks {', '.join(missing)}: {excerpt(item)}")
    return item


class MissingAdapterError(AdapterError, RuntimeError):
    """A method needs text about the env, but the env has no guidedrl adapter (or its adapter has no
    ``describe``). A :class:`~guidedrl.errors.GuidedRLError`: the CLI prints it as one sentence."""


@attrs.frozen(kw_only=True)
class Description:
    """A state for an LLM: a short natural-language text and the exact state as JSON-able data."""

    text: str
    state: dict[str, Any]

    def json(self) -> str:
        from guidedrl.llm.jsondata import jsonable  # the small module, not the LLM layer

        return json.dumps(self.state, sort_keys=True, default=jsonable)


def round_floats(values: Sequence[float] | np.ndarray, digits: int = 4) -> list[float]:
    """Round a vector for a prompt: exact enough to act on, short enough to read."""
    return [round(float(v), digits) for v in np.asarray(values, dtype=float).ravel()]


class DiscreteActions:
    """A discrete action space whose actions have names (``names[i]`` is action ``i``)."""

    kind: ClassVar[str] = "discrete"

    def __init__(self, names: Sequence[str], meanings: Sequence[str] | None = None) -> None:
        if not names:
            raise ValueError("DiscreteActions needs at least one action name")
        self.names = list(names)
        self.meanings = list(meanings) if meanings is not None else [""] * len(self.names)
        self.n = len(self.names)

    def prompt_text(self) -> str:
        lines = []
        for i, (name, meaning) in enumerate(zip(self.names, self.meanings, strict=True)):
            lines.append(f"- {i} = {name}" + (f": {meaning}" if meaning else ""))
        return "Actions (answer with the integer):\n" + "\n".join(lines)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "maximum": self.n - 1}

    def parse(self, value: Any) -> int:
        """Turn an answer into an action index; a name is accepted too. Raises :class:`InvalidAction`."""
        if isinstance(value, bool):
            raise InvalidAction(f"action must be an integer in 0..{self.n - 1}, got {value!r}")
        if isinstance(value, str):
            stripped = value.strip()
            lowered = [n.lower() for n in self.names]
            if stripped.lower() in lowered:
                return lowered.index(stripped.lower())
            try:
                value = int(stripped)
            except ValueError:
                raise InvalidAction(
                    f"unknown action {value!r}; use an integer in 0..{self.n - 1} or one of {self.names}"
                ) from None
        if isinstance(value, float):
            if not value.is_integer():
                raise InvalidAction(f"action must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, (int, np.integer)):
            raise InvalidAction(f"action must be an integer in 0..{self.n - 1}, got {value!r}")
        if not 0 <= int(value) < self.n:
            raise InvalidAction(f"action {int(value)} is out of range 0..{self.n - 1}")
        return int(value)

    def to_json(self, action: Any) -> int:
        return int(np.asarray(action).item())

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.n))


class BoxActions:
    """A bounded continuous action space; the LLM answers a vector of numbers within the bounds."""

    kind: ClassVar[str] = "box"

    def __init__(
        self, low: Sequence[float], high: Sequence[float], names: Sequence[str] | None = None
    ) -> None:
        self.low = np.asarray(low, dtype=np.float32).ravel()
        self.high = np.asarray(high, dtype=np.float32).ravel()
        if self.low.shape != self.high.shape or np.any(self.low > self.high):
            raise ValueError("BoxActions needs low <= high of the same shape")
        self.dim = self.low.size
        self.names = list(names) if names is not None else [f"a{i}" for i in range(self.dim)]

    def prompt_text(self) -> str:
        rows = [
            f"- [{i}] {name}: {lo:g} .. {hi:g}"
            for i, (name, lo, hi) in enumerate(zip(self.names, self.low, self.high, strict=True))
        ]
        return f"Action: a list of {self.dim} numbers, each within its bounds:\n" + "\n".join(rows)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "number"},
            "minItems": self.dim,
            "maxItems": self.dim,
        }

    def parse(self, value: Any) -> np.ndarray:
        """Turn an answer into an action vector. Raises :class:`InvalidAction` (never clips silently)."""
        if isinstance(value, (int, float)) and self.dim == 1:
            value = [value]
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise InvalidAction(f"action must be a list of {self.dim} numbers, got {value!r}")
        try:
            arr = np.asarray(value, dtype=np.float32).ravel()
        except (TypeError, ValueError):
            raise InvalidAction(f"action must be a list of {self.dim} numbers, got {value!r}") from None
        if arr.size != self.dim:
            raise InvalidAction(f"action must have {self.dim} numbers, got {arr.size}")
        if not np.all(np.isfinite(arr)):
            raise InvalidAction("action contains NaN or infinity")
        bad = np.nonzero((arr < self.low - 1e-6) | (arr > self.high + 1e-6))[0]
        if bad.size:
            i = int(bad[0])
            raise InvalidAction(
                f"action[{i}] ({self.names[i]}) = {arr[i]:g} is outside {self.low[i]:g} .. {self.high[i]:g}"
            )
        return arr

    def to_json(self, action: Any) -> list[float]:
        return round_floats(action)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high).astype(np.float32)


def vocabulary_for(space: gym.Space) -> DiscreteActions | BoxActions:
    """A generic vocabulary for a Gymnasium action space (actions named by index)."""
    if isinstance(space, gym.spaces.Discrete):
        return DiscreteActions([f"action_{i}" for i in range(int(space.n))])
    if isinstance(space, gym.spaces.Box):
        return BoxActions(space.low, space.high)
    raise TypeError(f"no action vocabulary for {type(space).__name__}; write an adapter")


class Expert:
    """Answers the questions an LLM is asked, from the exact JSON state alone.

    Subclasses implement :meth:`act`; the other answers have defaults built on it, so a heuristic
    controller is enough to power the ``simulated`` LLM. Override them where the env knows better.
    """

    def act(self, state: dict[str, Any]) -> Any:
        """The expert's action for a state, as the JSON value an LLM would answer."""
        raise NotImplementedError

    def importance(self, state: dict[str, Any]) -> float:
        """How much the action matters in this state, in [0, 1]. Default: always 1."""
        return 1.0

    def critical_states(
        self, states: Sequence[dict[str, Any]], actions: Sequence[Any], rewards: Sequence[float]
    ) -> list[dict[str, Any]]:
        """Critical timesteps of a trajectory: where the taken action differs from the expert's,
        scored by :meth:`importance`. Returns ``[{"t", "score", "reason"}]``, most critical first."""
        out = []
        for t, (state, action) in enumerate(zip(states, actions, strict=True)):
            best = self.act(state)
            if not _same_action(best, action):
                score = float(self.importance(state))
                if score > 0:
                    out.append(
                        {"t": t, "score": score, "reason": f"took {action}, expert would take {best}"}
                    )
        out.sort(key=lambda d: -d["score"])
        return out

    def implicit_reward(self, state: dict[str, Any], action: Any) -> float:
        """An implicit reward in [-1, 1] for taking ``action`` in ``state``. Default: +1 if it matches
        the expert's action, else -1, times :meth:`importance`."""
        sign = 1.0 if _same_action(self.act(state), action) else -1.0
        return sign * float(self.importance(state))


def _same_action(a: Any, b: Any, tol: float = 0.1) -> bool:
    a_arr, b_arr = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a_arr.shape != b_arr.shape:
        return False
    return bool(np.all(np.abs(a_arr - b_arr) <= tol))


class EnvAdapter:
    """A single-agent Gymnasium env plus what guidance needs. Subclass and fill the class attributes.

    ``env_id`` is the id users type (``"CartPole-v1"``, ``"ALE/Pong-v5"``); ``task`` states the goal
    and termination conditions in a sentence or two (it heads every prompt).
    """

    env_id: str = ""
    task: str = ""
    multi_agent: ClassVar[bool] = False

    def __init__(self, **make_kwargs: Any) -> None:
        self.make_kwargs = make_kwargs
        self._vocabulary: ActionVocabulary | None = None

    def make(self, **kwargs: Any) -> gym.Env:
        """A fresh env instance (training, test and LLM-side rollouts each get their own)."""
        return gym.make(self.env_id, **{**self.make_kwargs, **kwargs})

    @property
    def vocabulary(self) -> ActionVocabulary:
        """The action vocabulary, built once from :meth:`action_vocabulary`."""
        if self._vocabulary is None:
            env = self.make()
            try:
                self._vocabulary = build_vocabulary(self, env.action_space)
            finally:
                env.close()
        return self._vocabulary

    def action_vocabulary(self, space: gym.Space) -> ActionVocabulary:
        """What each action means. Default: generic names by index.

        Override as ``action_vocabulary(self, space)`` or, when the vocabulary does not depend on
        the space, ``action_vocabulary(self)``: the core calls either spelling."""
        return vocabulary_for(space)

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        """The state in words plus exact JSON. Adapters must override this."""
        raise MissingAdapterError(
            f"adapter {self!r} does not implement describe(obs, info), so an LLM cannot be told about its "
            "states; implement it (CONTRIBUTING.md, 'Writing an environment adapter')"
        )

    @property
    def expert(self) -> Expert | None:
        """An expert that can answer the LLM's questions, or ``None``."""
        return None

    def simulate(self, state: dict[str, Any], action: Any) -> SimResult | None:
        """Optional simulator check of an action from a state, before it is used (e.g. Grid2Op's
        ``obs.simulate``): a :class:`~guidedrl.envs.SimResult` whose ``reason`` is fed back to the
        LLM. Default ``None``: no simulator (a method that ``requires = ("simulate",)`` is refused
        at start-up). ``state`` is the exact JSON of :meth:`describe`, ``action`` a parsed action."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r})"


class PlainGymAdapter(EnvAdapter):
    """Any Gymnasium id without an adapter: it trains, but cannot be described to an LLM."""

    def __init__(self, env_id: str, **make_kwargs: Any) -> None:
        super().__init__(**make_kwargs)
        self.env_id = env_id

    def describe(self, obs: np.ndarray, info: dict[str, Any] | None = None) -> Description:
        raise MissingAdapterError(
            f"environment {self.env_id!r} has no guidedrl adapter, so an LLM cannot be told about its "
            "states. Install an adapter distribution that registers it (see `guidedrl envs`) or write "
            "one (CONTRIBUTING.md, 'Writing an environment adapter')."
        )


class MultiAgentEnvAdapter:
    """A PettingZoo parallel env plus what guidance needs.

    ``make()`` returns a ``pettingzoo.ParallelEnv``. ``describe(observations, info)`` describes the
    joint state. ``expert`` may offer ``plan(state) -> list[instruction]`` and ``act(state) ->
    {agent: action}``. An adapter that plans (LCIL, LEED) implements the
    :class:`~guidedrl.envs.PlanExecutor` protocol: ``validate_plan(plan)`` (normalised items or
    :class:`InvalidAction`) and ``execute_plan(plan, state) -> PlanStep`` (every agent's action in
    this state, and the items rejected here with their reasons).
    """

    env_id: str = ""
    task: str = ""
    multi_agent: ClassVar[bool] = True

    def __init__(self, **make_kwargs: Any) -> None:
        self.make_kwargs = make_kwargs

    def make(self, **kwargs: Any) -> Any:
        raise NotImplementedError

    def describe(self, observations: dict[str, Any], info: dict[str, Any] | None = None) -> Description:
        """The joint state in words plus exact JSON. Adapters must override this."""
        raise MissingAdapterError(
            f"multi-agent environment {self.env_id!r} has no description; its adapter must implement describe()"
        )

    @property
    def expert(self) -> Any:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env_id!r})"

"""A vocabulary for huge discrete action spaces: actions as structured objects, not a list of names.

An LLM cannot read 67,000 action names (ACE on Grid2Op), but it can read their *structure*
("``{"substation": int 0..35, "bus_layout": list of ints in {1, 2}}``") and answer an object of that
shape. :class:`FactoredActions` maps each structured action to its index and back through a dict on
a canonical key (no scans), shows the structure plus an optional shortlist of candidates in a
prompt of bounded size, and rejects an answer that names no action with a reason an LLM can act on
("substation 4 has no bus_layout [1, 2, 2]; with substation=4: [1, 1, 2], [1, 2, 1], ...").

Hand-written: no library indexes heterogeneous structured actions both ways; it is two dicts.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from guidedrl.envs.base import InvalidAction

MAX_PROMPT_CHARS = 4000
"""Default bound on :meth:`FactoredActions.prompt_text`, whatever the number of actions."""


def _norm(value: Any) -> Any:
    """A structured value in canonical form: tuples/arrays → lists, integral floats and numpy scalars
    → ints, so that ``{"bus": (1, 2.0)}`` and ``{"bus": [1, 2]}`` are the same action."""
    if type(value) in (int, str):  # the common case, first
        return value
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return [v if type(v) in (int, str) else _norm(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): v if type(v) in (int, str) else _norm(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _key(action: Mapping[str, Any]) -> str:
    return json.dumps(action, sort_keys=True, separators=(",", ":"))


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Factor:
    """The values one key takes within one kind of action (for prompt text and error messages)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scalars: set[Any] = set()
        self.lengths: set[int] = set()
        self.elements: set[Any] = set()

    def add(self, value: Any) -> None:
        if isinstance(value, list):
            self.lengths.add(len(value))
            try:
                self.elements.update(value)
            except TypeError:  # nested lists or objects: compared by their JSON
                self.elements.update(json.dumps(v) if isinstance(v, (list, dict)) else v for v in value)
        else:
            self.scalars.add(json.dumps(value) if isinstance(value, dict) else value)

    @staticmethod
    def _values(values: set[Any], max_listed: int = 12) -> str:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            lo, hi = min(values), max(values)
            if len(values) == hi - lo + 1:
                return f"int {lo}..{hi}"
            if len(values) <= max_listed:
                return "one of " + ", ".join(str(v) for v in sorted(values))
            return f"int in {lo}..{hi} ({len(values)} values)"
        shown = sorted(values, key=str)
        listed = " | ".join(json.dumps(v) for v in shown[:max_listed])
        return listed + (f" | ... ({len(values)} values)" if len(values) > max_listed else "")

    def describe(self) -> str:
        parts = []
        if self.scalars:
            parts.append(self._values(self.scalars))
        if self.lengths:
            lo, hi = min(self.lengths), max(self.lengths)
            n = f"{lo}" if lo == hi else f"{lo}..{hi}"
            parts.append(f"list of {n} items, each {self._values(self.elements) if self.elements else 'any'}")
        return " or ".join(parts)

    def allows(self, value: Any) -> bool:
        if isinstance(value, list):
            return len(value) in self.lengths and all(
                (json.dumps(v) if isinstance(v, (list, dict)) else v) in self.elements for v in value
            )
        return (json.dumps(value) if isinstance(value, dict) else value) in self.scalars


class _Kind:
    """The actions sharing one set of keys (e.g. every ``{"substation", "bus_layout"}`` action)."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.factors = {k: _Factor(k) for k in keys}
        self.count = 0
        self.first = -1
        self.by_anchor: dict[str, list[int]] = {}  # canonical value of the first key → action indices

    def add(self, index: int, action: dict[str, Any]) -> None:
        if self.first < 0:
            self.first = index
        self.count += 1
        for k in self.keys:
            self.factors[k].add(action[k])
        anchor = action[self.keys[0]]
        self.by_anchor.setdefault(anchor if type(anchor) in (int, str) else json.dumps(anchor), []).append(index)

    def shape(self) -> str:
        return "{" + ", ".join(f'"{k}": {self.factors[k].describe()}' for k in self.keys) + "}"


class FactoredActions:
    """A discrete action space whose actions are structured objects (``{"substation": 4,
    "bus_layout": [1, 2, 1]}``, ``{"line": 7, "status": "off"}``), indexed ``0..n-1`` in the order
    given.

    Actions may be of several kinds (different key sets). ``to_structured(i)`` and ``index_of(action)``
    convert both ways in O(1); ``parse`` accepts an index or a structured object (or its JSON text);
    ``prompt_text`` shows the structure, an example per kind and an optional shortlist, and is at
    most ``max_chars`` characters (default :data:`MAX_PROMPT_CHARS`) for any number of actions.
    Actions are ints for the policy (a Gymnasium ``Discrete(n)`` space); ``to_json`` gives the
    structured form an LLM reads.
    """

    kind: ClassVar[str] = "factored"

    def __init__(
        self,
        actions: Iterable[Mapping[str, Any]],
        *,
        field_help: Mapping[str, str] | None = None,
        title: str = "Actions",
    ) -> None:
        """``actions``: the structured actions (action ``i`` is ``actions[i]``); ``field_help``: one
        phrase per key for the prompt (``{"bus_layout": "bus (1 or 2) of each element"}``);
        ``title``: the prompt's heading word."""
        self._actions: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}
        self._kinds: dict[tuple[str, ...], _Kind] = {}
        for i, raw in enumerate(actions):
            if not isinstance(raw, Mapping) or not raw:
                raise ValueError(f"FactoredActions: action {i} must be a non-empty mapping, got {raw!r}")
            action = _norm(raw)
            key = _key(action)
            if key in self._index:
                raise ValueError(f"FactoredActions: action {i} repeats action {self._index[key]} ({key})")
            self._index[key] = i
            self._actions.append(action)
            keys = tuple(action)
            kind = self._kinds.get(keys) or self._kinds.setdefault(keys, _Kind(keys))
            kind.add(i, action)
        if not self._actions:
            raise ValueError("FactoredActions needs at least one action")
        self._by_keyset = {frozenset(k): kind for k, kind in self._kinds.items()}
        self.n = len(self._actions)
        self.field_help = dict(field_help or {})
        self.title = title

    @classmethod
    def from_factors(
        cls,
        factors: Mapping[str, Sequence[Any]],
        *,
        keep: Any = None,
        field_help: Mapping[str, str] | None = None,
        title: str = "Actions",
    ) -> FactoredActions:
        """Every combination of the factors' values (``itertools.product``, last factor fastest),
        optionally filtered by ``keep(action) -> bool``."""
        names = list(factors)
        combos = (dict(zip(names, values, strict=True)) for values in itertools.product(*factors.values()))
        return cls((a for a in combos if keep is None or keep(a)), field_help=field_help, title=title)

    # -- index <-> structured action -------------------------------------------------------------
    def to_structured(self, index: int) -> dict[str, Any]:
        """The structured action of ``index`` (a copy)."""
        i = int(index)
        if not 0 <= i < self.n:
            raise IndexError(f"action {i} is out of range 0..{self.n - 1}")
        return json.loads(_key(self._actions[i]))

    def index_of(self, action: Mapping[str, Any]) -> int:
        """The index of a structured action; :class:`InvalidAction` (with the reason) if none."""
        if not isinstance(action, Mapping):
            raise InvalidAction(f"an action object must be a JSON object such as {_key(self._actions[0])}, got {action!r}")
        norm = _norm(action)
        found = self._index.get(_key(norm))
        if found is None:
            raise InvalidAction(self._why_not(norm))
        return found

    def __len__(self) -> int:
        return self.n

    # -- the ActionVocabulary protocol -------------------------------------------------------------
    def parse(self, value: Any) -> int:
        """An answer → action index: an integer index, a structured object, or the JSON text of either.
        Raises :class:`InvalidAction` saying what is wrong (unknown keys, a value out of a field's
        range, or a combination that is not an action, with valid ones to choose from)."""
        if isinstance(value, str):
            text = value.strip()
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidAction(
                    f"{_short(text, 80)!r} is neither an action index 0..{self.n - 1} nor a JSON object "
                    f"such as {_key(self._actions[0])}"
                ) from None
        if isinstance(value, bool):
            raise InvalidAction(f"action must be an index 0..{self.n - 1} or an action object, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, (int, np.integer)):
            if not 0 <= int(value) < self.n:
                raise InvalidAction(f"action {int(value)} is out of range 0..{self.n - 1}")
            return int(value)
        if isinstance(value, Mapping):
            return self.index_of(value)
        raise InvalidAction(
            f"action must be an index 0..{self.n - 1} or a JSON object such as {_key(self._actions[0])}, got {_short(repr(value), 80)}"
        )

    def to_json(self, action: Any) -> dict[str, Any]:
        """The structured form of an action index (what an LLM reads)."""
        return self.to_structured(int(np.asarray(action).item()))

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.n))

    def json_schema(self) -> dict[str, Any]:
        """An action index, or an object of one of the kinds (its keys required, no others)."""
        objects = [
            {
                "type": "object",
                "properties": {k: _field_schema(kind.factors[k]) for k in kind.keys},
                "required": list(kind.keys),
                "additionalProperties": False,
            }
            for kind in self._kinds.values()
        ]
        return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": self.n - 1}, *objects]}

    def prompt_text(self, shortlist: Sequence[Any] | None = None, max_items: int = 20, max_chars: int = MAX_PROMPT_CHARS) -> str:
        """The structure of the actions, an example of each kind, and up to ``max_items`` candidates
        from ``shortlist`` (indices or structured actions), in at most ``max_chars`` characters:
        never one line per action. Lines that do not fit are cut, and the text says so."""
        kinds = list(self._kinds.values())
        lines = [
            f"{self.title}: {self.n} actions. Answer with a JSON object of one of these forms "
            "(every field required), or with the action's integer index:"
        ]
        per_line = max(120, max_chars // 2 // max(1, min(len(kinds), 8)))  # the forms get half the budget
        for kind in kinds[:8]:
            example = json.dumps(self._actions[kind.first])
            lines.append(_short(f"- {kind.shape()}  ({kind.count} actions; e.g. {example})", per_line))
        if len(kinds) > 8:
            lines.append(f"- ... and {len(kinds) - 8} more forms")
        helped = [k for k in dict.fromkeys(k for kind in kinds for k in kind.keys) if k in self.field_help]
        if helped:
            lines.append("Fields: " + "; ".join(f"{k}: {self.field_help[k]}" for k in helped))
        lines.append("Not every combination of field values is an action; an invalid one is rejected with the reason.")
        if shortlist:
            lines.append("Candidate actions (index = action):")
            for item in list(shortlist)[:max_items]:
                i = self.parse(item)
                lines.append(_short(f"- {i} = {json.dumps(self._actions[i])}", 300))
            if len(shortlist) > max_items:
                lines.append(f"- ... {len(shortlist) - max_items} more candidates not shown")
        text = "\n".join(lines)
        if len(text) > max_chars:
            cut = "\n[... cut to fit the prompt]"
            text = text[: max_chars - len(cut)].rsplit("\n", 1)[0] + cut
        return text

    # -- why an object names no action ------------------------------------------------------------
    def _why_not(self, action: dict[str, Any]) -> str:
        kind = self._by_keyset.get(frozenset(action))
        forms = " or ".join("{" + ", ".join(k.keys) + "}" for k in list(self._kinds.values())[:6])
        if kind is None:
            return f"no action has the fields {sorted(action)}; an action object has the fields {forms}"
        for k in kind.keys:
            if not kind.factors[k].allows(action[k]):
                return f"{k} = {_short(json.dumps(action[k]), 80)} is not valid: {k} must be {_short(kind.factors[k].describe(), 200)}"
        anchor = kind.keys[0]
        value = action[anchor]
        same = kind.by_anchor.get(value if type(value) in (int, str) else json.dumps(value), [])
        if len(kind.keys) == 1 or not same:
            return f"{_key(action)} is not an action"
        rest = [k for k in kind.keys if k != anchor]
        options = [
            ", ".join(f"{k}={json.dumps(self._actions[i][k])}" for k in rest) for i in same[:5]
        ]
        return (
            f"no action combines {anchor}={json.dumps(action[anchor])} with "
            + ", ".join(f"{k}={_short(json.dumps(action[k]), 60)}" for k in rest)
            + f"; with {anchor}={json.dumps(action[anchor])} there are {len(same)} actions, e.g. "
            + "; ".join(_short(o, 120) for o in options)
        )


def _field_schema(factor: _Factor) -> dict[str, Any]:
    schemas: list[dict[str, Any]] = []
    if factor.scalars:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in factor.scalars):
            schemas.append({"type": "integer", "minimum": min(factor.scalars), "maximum": max(factor.scalars)})
        elif len(factor.scalars) <= 50 and all(isinstance(v, (str, bool, int, float)) for v in factor.scalars):
            schemas.append({"enum": sorted(factor.scalars, key=str)})
        else:
            schemas.append({})
    if factor.lengths:
        schemas.append({"type": "array", "minItems": min(factor.lengths), "maxItems": max(factor.lengths)})
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}

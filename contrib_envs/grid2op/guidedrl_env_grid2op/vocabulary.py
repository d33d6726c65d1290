"""A factored action vocabulary for Grid2Op: every index <-> a structured action, no per-action scan.

Index layout (fixed for a grid): ``0`` = do nothing; ``1 + 2*l`` / ``2 + 2*l`` = set line ``l`` off / on;
then, substation by substation, every bus layout Grid2Op's
``action_space.get_all_unitary_topologies_set`` enumerates (same rule, same order; a test checks it):
the first element stays on bus 1 (a layout and its 1<->2 swap are the same split), every bus in use
connects at least one line, and a substation with fewer than two such layouts offers none.

Layouts are stored as bit masks (bit ``k`` set = element ``k`` of the substation on bus 2), so the
67k-action grid builds in well under a second and lookups both ways are O(1) (offset arithmetic one
way, a dict keyed by ``(substation, mask)`` the other).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from guidedrl.envs import InvalidAction

PROMPT_BOUND = 4000
"""``prompt_text()`` stays under this many characters on every grid (a test asserts it on the 67k grid)."""


class GridActions:
    """Do nothing, line status, substation bus layouts: index <-> ``{"kind": ...}`` dict.

    Built from the grid's structure alone (``sub_info``, which element sits where), so it needs no
    live env. ``element_names[s]`` names the elements of substation ``s`` in Grid2Op's order (the
    order of ``bus_layout``).
    """

    kind: ClassVar[str] = "discrete"

    def __init__(
        self,
        *,
        grid_name: str,
        n_line: int,
        element_names: Sequence[Sequence[str]],
        line_positions: Sequence[Sequence[int]],
    ) -> None:
        self.grid_name = grid_name
        self.n_line = int(n_line)
        self.element_names = [list(e) for e in element_names]
        self.n_sub = len(self.element_names)
        self.sub_size = np.array([len(e) for e in self.element_names], dtype=np.int64)
        masks = [_layout_masks(int(n), line_positions[s]) for s, n in enumerate(self.sub_size)]
        self._masks = masks
        self.n_layouts = np.array([m.size for m in masks], dtype=np.int64)
        self.topo_start = 1 + 2 * self.n_line
        # _sub_offset[s]: index of substation s's first layout; searchsorted maps an index back to s.
        self._sub_offset = self.topo_start + np.concatenate([[0], np.cumsum(self.n_layouts)[:-1]])
        self.n = int(self.topo_start + self.n_layouts.sum())
        self._mask_index = {
            (s, int(mask)): int(self._sub_offset[s] + k) for s, ms in enumerate(masks) for k, mask in enumerate(ms)
        }

    # --- both ways ------------------------------------------------------------------------------
    def to_structured(self, i: int) -> dict[str, Any]:
        i = self._check_index(i)
        if i == 0:
            return {"kind": "do_nothing"}
        if i < self.topo_start:
            line, on = divmod(i - 1, 2)
            return {"kind": "line", "line": int(line), "status": "on" if on else "off"}
        s = int(np.searchsorted(self._sub_offset, i, side="right") - 1)
        mask = int(self._masks[s][i - self._sub_offset[s]])
        layout = [2 if mask >> k & 1 else 1 for k in range(int(self.sub_size[s]))]
        return {"kind": "substation", "substation": s, "bus_layout": layout}

    def index_of(self, action: dict[str, Any]) -> int:
        """The index of a structured action; :class:`InvalidAction` (with the fix) when there is none."""
        if not isinstance(action, dict):
            raise InvalidAction(f"a structured action is a JSON object with a 'kind', got {action!r}")
        kind = action.get("kind")
        if kind == "do_nothing":
            return 0
        if kind == "line":
            line = _int_field(action, "line", f"0..{self.n_line - 1}")
            if not 0 <= line < self.n_line:
                raise InvalidAction(f"line {line} does not exist; this grid has lines 0..{self.n_line - 1}")
            status = action.get("status")
            if status not in ("on", "off"):
                raise InvalidAction(f"a line action needs \"status\": \"on\" or \"off\", got {status!r}")
            return 1 + 2 * line + (status == "on")
        if kind == "substation":
            s = _int_field(action, "substation", f"0..{self.n_sub - 1}")
            if not 0 <= s < self.n_sub:
                raise InvalidAction(f"substation {s} does not exist; this grid has substations 0..{self.n_sub - 1}")
            layout = action.get("bus_layout")
            n = int(self.sub_size[s])
            if not isinstance(layout, (list, tuple)) or any(isinstance(b, bool) or b not in (1, 2) for b in layout):
                raise InvalidAction(
                    f"bus_layout must be a list of {n} bus numbers (1 or 2), one per element of substation {s} "
                    f"({', '.join(self.element_names[s])}); got {layout!r}"
                )
            if len(layout) != n:
                raise InvalidAction(
                    f"substation {s} has {n} elements ({', '.join(self.element_names[s])}), so bus_layout needs "
                    f"{n} entries; got {len(layout)}"
                )
            if self.n_layouts[s] == 0:
                raise InvalidAction(f"substation {s} cannot be split (it has no valid two-bus layout); choose another")
            bits = [int(b) == 2 for b in layout]
            if bits[0]:  # the 1<->2 swap is the same split: canonical form keeps element 0 on bus 1
                bits = [not b for b in bits]
            mask = sum(1 << k for k, b in enumerate(bits) if b)
            index = self._mask_index.get((s, mask))
            if index is None:
                raise InvalidAction(
                    f"bus_layout {list(layout)} at substation {s} leaves a bus without any line "
                    "(each bus in use must connect at least one line); move a line onto that bus"
                )
            return index
        raise InvalidAction(f"unknown action kind {kind!r}; use 'do_nothing', 'line' or 'substation'")

    def key(self, i: int) -> tuple:
        """A canonical hashable key: ``("do_nothing",)``, ``("line", l, "on")``, ``("substation", s, mask)``."""
        d = self.to_structured(i)
        if d["kind"] == "line":
            return ("line", d["line"], d["status"])
        if d["kind"] == "substation":
            return ("substation", d["substation"], self.layout_mask(i))
        return ("do_nothing",)

    def substation_range(self, s: int) -> range:
        """The indices of substation ``s``'s layouts."""
        start = int(self._sub_offset[s])
        return range(start, start + int(self.n_layouts[s]))

    def layout_mask(self, i: int) -> int:
        s = int(np.searchsorted(self._sub_offset, i, side="right") - 1)
        return int(self._masks[s][i - self._sub_offset[s]])

    # --- the vocabulary protocol (guidedrl.envs.DiscreteActions) ----------------------------------
    def parse(self, value: Any) -> int:
        """An index (int or numeric string), a structured dict, or a JSON string of one -> an index."""
        if isinstance(value, bool) or value is None:
            raise InvalidAction(f"answer an action index 0..{self.n - 1} or a structured action, got {value!r}")
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise InvalidAction(f"could not read {value!r} as a JSON action object") from None
            elif text.lower().replace("_", " ") in ("do nothing", "donothing", "noop"):
                return 0
            else:
                try:
                    value = int(text)
                except ValueError:
                    raise InvalidAction(
                        f"unknown action {value!r}; answer an index 0..{self.n - 1} or an object like "
                        '{"kind": "substation", "substation": 4, "bus_layout": [1, 2, 1, 1, 2]}'
                    ) from None
        if isinstance(value, dict):
            return self.index_of(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise InvalidAction(f"action index must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, (int, np.integer)):
            raise InvalidAction(f"answer an action index 0..{self.n - 1} or a structured action, got {value!r}")
        return self._check_index(int(value))

    def to_json(self, action: Any) -> int:
        return int(np.asarray(action).item())

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.n))

    def json_schema(self) -> dict[str, Any]:
        return {
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": self.n - 1},
                {
                    "type": "object",
                    "properties": {
                        "kind": {"enum": ["do_nothing", "line", "substation"]},
                        "line": {"type": "integer", "minimum": 0, "maximum": self.n_line - 1},
                        "status": {"enum": ["on", "off"]},
                        "substation": {"type": "integer", "minimum": 0, "maximum": self.n_sub - 1},
                        "bus_layout": {"type": "array", "items": {"enum": [1, 2]}},
                    },
                    "required": ["kind"],
                },
            ]
        }

    def describe_action(self, i: int, max_chars: int = 110) -> str:
        """One action in words (for shortlists and recent actions), at most about ``max_chars`` long:
        a split naming too many elements shows its bus_layout instead."""
        d = self.to_structured(i)
        if d["kind"] == "do_nothing":
            return "do nothing"
        if d["kind"] == "line":
            return f"switch line {d['line']} {d['status']}"
        s, layout = d["substation"], d["bus_layout"]
        if all(b == 1 for b in layout):
            return f"merge substation {s} back onto bus 1"
        on2 = [k for k, b in enumerate(layout) if b == 2]
        text = f"split substation {s}: {', '.join(self.element_names[s][k] for k in on2)} on bus 2"
        if len(text) > max_chars:
            text = f"split substation {s}: bus_layout {layout}"
        return text

    def prompt_text(self, shortlist: Sequence[int] | None = None) -> str:
        """The STRUCTURE of the action space plus at most 20 candidates; never one line per action.

        Its size is bounded by the number of substations (about 8 characters each) plus at most 20
        candidate rows of about 110 characters, so it stays under :data:`PROMPT_BOUND` characters on
        every L2RPN grid (36 substations with 20 candidates: about 3,000).
        """
        sizes = zip(self.sub_size, self.n_layouts, strict=True)
        subs = " ".join(f"{s}:{int(n)}/{int(k)}" for s, (n, k) in enumerate(sizes))
        example_sub = int(np.argmax(self.n_layouts > 0))
        example = self.to_structured(self.substation_range(example_sub)[-1])
        lines = [
            f"Actions on grid {self.grid_name} ({self.n} in all). Answer ONE of them, either as its integer index "
            "or as a JSON object:",
            '- {"kind": "do_nothing"} (index 0)',
            f'- {{"kind": "line", "line": L, "status": "off"|"on"}}: lines 0..{self.n_line - 1} '
            "(index 1+2L = off, 2+2L = on)",
            '- {"kind": "substation", "substation": S, "bus_layout": [...]}: put each element of substation S '
            "on bus 1 or 2, in the substation's element order (the state lists the elements of the substations "
            "near trouble); every bus in use must connect a line; all 1s merges the substation back.",
            f"Substations as S:elements/layouts: {subs}",
            f"Example: {json.dumps(example)}",
        ]
        if shortlist:
            lines.append("Candidates for this state:")
            lines += [f"- {i}: {self.describe_action(i)}" for i in list(shortlist)[:20]]
        else:
            lines.append("The state's \"candidates\" list suggests actions for the current state.")
        return "\n".join(lines)

    def _check_index(self, i: Any) -> int:
        i = int(i)
        if not 0 <= i < self.n:
            raise InvalidAction(f"action {i} is out of range 0..{self.n - 1}")
        return i

    def __len__(self) -> int:
        return self.n


def _int_field(action: dict[str, Any], name: str, allowed: str) -> int:
    value = action.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidAction(f"{name!r} must be an integer in {allowed}, got {value!r}")
    return int(value)


def _layout_masks(n: int, line_positions: Sequence[int]) -> np.ndarray:
    """The valid two-bus layouts of a substation with ``n`` elements, as bit masks (bit k = element k
    on bus 2), in Grid2Op's ``get_all_unitary_topologies_set`` order. Hand-written (vectorised) because
    Grid2Op's version builds one action object per layout: 12 s and ~0.4 GB on the 67k grid."""
    if n < 2:
        return np.zeros(0, dtype=np.int64)
    # itertools.product over elements 1..n-1 with element 0 fixed on bus 1: the last element varies
    # fastest, so the order is the binary count with element 1 as the most significant bit.
    count = np.arange(1 << (n - 1), dtype=np.int64)
    masks = np.zeros_like(count)
    for k in range(1, n):
        masks |= ((count >> (n - 1 - k)) & 1) << k
    line_bits = sum(1 << int(p) for p in line_positions)
    bus2_used = masks != 0
    bus1_has_line = (~masks & line_bits) != 0
    bus2_has_line = (masks & line_bits) != 0
    ok = bus1_has_line & (~bus2_used | bus2_has_line)
    masks = masks[ok]
    return masks if masks.size >= 2 else np.zeros(0, dtype=np.int64)

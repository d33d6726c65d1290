"""ULTRA's lookup table of critical states and the rule that recognises them in new rollouts.

The paper keeps a table *critical state → LLM action / implicit reward* but does not say how a state
met later counts as "the same" critical state; with continuous observations it never is exactly.
The rule here (documented in the README):

- Features: the flattened observation, or the env adapter's ``match_features(obs_batch)`` when it
  has them (Pong: ball position and velocity, paddle height).
- ``nearest``: features are standardised with running statistics of every observation seen (their
  mean and standard deviation, frozen whenever the table is rebuilt), and a state matches the
  nearest critical state if their root-mean-square distance per feature is at most ``tolerance``
  standard deviations. Constant features (std 0) are ignored. A scipy KD-tree answers the queries.
- ``exact``: features rounded to ``decimals`` must be equal (a dict lookup); for discrete states.

Written by hand because no library keeps a growing table with running standardisation; the
nearest-neighbour search itself is scipy's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from scipy.spatial import cKDTree
from tianshou.utils.statistics import RunningMeanStd

_STD_FLOOR = 1e-6


@attrs.define(kw_only=True)
class CriticalEntry:
    """One critical state: where it was, what the LLM said to do and how it rated actions there."""

    obs: np.ndarray
    """The observation (as the policy sees it)."""
    features: np.ndarray
    """What the matching rule compares."""
    taken: Any
    """The action the analysed (sub-optimal) policy took there, in env space."""
    score: float = 1.0
    reason: str = ""
    advice: Any = None
    """The LLM's better action (env space), or ``None`` (variant without A, or a fallback)."""
    ratings: list[tuple[Any, float | None]] = attrs.field(factory=list)
    """``(action, implicit reward in [-1, 1])`` pairs the LLM has given for this state; ``None`` marks
    an action whose rating failed (not asked again)."""
    step: int = 0
    """Env step at which it was identified."""


class CriticalStateTable:
    """Critical states with a matching rule; ``match(obs_batch)`` → entry index per row, or -1.

    :param features: obs batch ``(n, *obs_shape)`` → feature matrix ``(n, d)``.
    :param rule: ``"nearest"`` or ``"exact"``.
    :param tolerance: ``nearest``: RMS distance in standard deviations per feature.
    :param decimals: ``exact``: rounding before comparing.
    :param max_size: entries kept (lowest scores dropped first).
    """

    def __init__(
        self,
        features: Callable[[np.ndarray], np.ndarray],
        *,
        rule: str = "nearest",
        tolerance: float = 0.25,
        decimals: int = 2,
        max_size: int = 20000,
    ) -> None:
        if rule not in ("nearest", "exact"):
            raise ValueError(f"rule must be 'nearest' or 'exact', got {rule!r}")
        self.features = features
        self.rule = rule
        self.tolerance = float(tolerance)
        self.decimals = int(decimals)
        self.max_size = int(max_size)
        self.entries: list[CriticalEntry] = []
        self.stats: RunningMeanStd | None = None
        self._tree: cKDTree | None = None
        self._frozen: tuple[np.ndarray, np.ndarray] | None = None  # (mean, 1/std masked)
        self._keys: dict[tuple, int] = {}

    def __len__(self) -> int:
        return len(self.entries)

    # -- statistics ---------------------------------------------------------------------------
    def feats(self, obs: np.ndarray) -> np.ndarray:
        out = np.asarray(self.features(np.asarray(obs)), dtype=np.float64)
        return out.reshape(len(out), -1)

    def observe(self, obs: np.ndarray | None = None, *, feats: np.ndarray | None = None) -> None:
        """Update the running feature statistics with a batch of observations (or features)."""
        f = self.feats(obs) if feats is None else np.asarray(feats, dtype=np.float64)
        if len(f) == 0:
            return
        if self.stats is None:
            self.stats = RunningMeanStd(mean=np.zeros(f.shape[1]), std=np.ones(f.shape[1]), clip_max=None)
            self.stats.count = 0
        self.stats.update(f)

    def _standardise(self, f: np.ndarray) -> np.ndarray:
        mean, scale = self._frozen  # type: ignore[misc]
        return (f - mean) * scale

    # -- building -----------------------------------------------------------------------------
    def add(self, entries: list[CriticalEntry]) -> tuple[int, int]:
        """Add critical states. One that is (almost) a stored state — the same key, or within a
        quarter of the tolerance — updates it instead: the newer advice wins, ratings are merged, the
        score is the max. Returns ``(added, merged)``."""
        added = merged = 0
        for entry in entries:
            hit = self.match(entry.obs[None], feats=entry.features[None], tolerance=self.tolerance / 4)[0] if self.entries else -1
            if hit >= 0:
                old = self.entries[hit]
                if entry.advice is not None:
                    old.advice = entry.advice
                old.ratings.extend(r for r in entry.ratings if not any(_same(r[0], o[0]) for o in old.ratings))
                old.score = max(old.score, entry.score)
                merged += 1
            else:
                self.entries.append(entry)
                added += 1
                if self.rule == "exact":  # keep lookups exact while adding a batch
                    self._keys.setdefault(self._key(entry.features), len(self.entries) - 1)
                else:
                    self.rebuild()
        if len(self.entries) > self.max_size:
            order = sorted(range(len(self.entries)), key=lambda i: (-self.entries[i].score, -self.entries[i].step))
            self.entries = [self.entries[i] for i in sorted(order[: self.max_size])]
        self.rebuild()
        return added, merged

    def rebuild(self) -> None:
        """Freeze the current statistics and index the entries with them."""
        if not self.entries:
            self._tree, self._frozen, self._keys = None, None, {}
            return
        f = np.stack([e.features for e in self.entries])
        if self.rule == "exact":
            self._keys = {}
            for i, row in enumerate(f):
                self._keys.setdefault(self._key(row), i)
            return
        if self.stats is None or self.stats.count == 0:
            self.observe(feats=f)
        std = np.sqrt(np.asarray(self.stats.var, dtype=np.float64))  # type: ignore[union-attr]
        active = std > _STD_FLOOR
        if not active.any():  # every feature constant: all states look alike, use raw units
            active = np.ones_like(active)
            std = np.ones_like(std)
        scale = np.where(active, 1.0 / np.maximum(std, _STD_FLOOR), 0.0) / np.sqrt(active.sum())
        self._frozen = (np.asarray(self.stats.mean, dtype=np.float64), scale)  # type: ignore[union-attr]
        self._tree = cKDTree(self._standardise(f))

    def _key(self, row: np.ndarray) -> tuple:
        return tuple(np.round(np.asarray(row, dtype=np.float64), self.decimals).tolist())

    # -- matching -----------------------------------------------------------------------------
    def match(self, obs: np.ndarray, *, feats: np.ndarray | None = None, tolerance: float | None = None) -> np.ndarray:
        """Index of the matched critical state for each observation, -1 where none matches."""
        n = len(obs) if feats is None else len(feats)
        if not self.entries or n == 0:
            return np.full(n, -1, dtype=np.int64)
        f = self.feats(obs) if feats is None else np.asarray(feats, dtype=np.float64).reshape(n, -1)
        if self.rule == "exact":
            return np.array([self._keys.get(self._key(row), -1) for row in f], dtype=np.int64)
        if self._tree is None:
            self.rebuild()
        bound = self.tolerance if tolerance is None else tolerance
        dist, idx = self._tree.query(self._standardise(f), k=1, distance_upper_bound=bound * (1 + 1e-9))  # type: ignore[union-attr]
        idx = np.asarray(idx, dtype=np.int64)
        return np.where(np.isfinite(dist) & (idx < len(self.entries)), idx, -1)

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors, numbers, strings and lists only (loads with ``torch.load(weights_only=True)``)."""
        import torch

        def plain(a: Any) -> Any:
            if a is None:
                return None
            arr = np.asarray(a)
            return arr.item() if arr.ndim == 0 else arr.tolist()

        return {
            "obs": torch.as_tensor(np.stack([e.obs for e in self.entries])) if self.entries else None,
            "features": torch.as_tensor(np.stack([e.features for e in self.entries])) if self.entries else None,
            "taken": [plain(e.taken) for e in self.entries],
            "score": [float(e.score) for e in self.entries],
            "reason": [e.reason for e in self.entries],
            "advice": [plain(e.advice) for e in self.entries],
            "ratings": [[[plain(a), None if r is None else float(r)] for a, r in e.ratings] for e in self.entries],
            "step": [int(e.step) for e in self.entries],
            "stats": None
            if self.stats is None
            else {
                "mean": torch.as_tensor(np.asarray(self.stats.mean, dtype=np.float64)),
                "var": torch.as_tensor(np.asarray(self.stats.var, dtype=np.float64)),
                "count": int(self.stats.count),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = []
        if state.get("obs") is not None:
            obs, feats = state["obs"].numpy(), state["features"].numpy()
            for i in range(len(obs)):
                self.entries.append(
                    CriticalEntry(
                        obs=obs[i], features=feats[i], taken=_array(state["taken"][i]), score=state["score"][i],
                        reason=state["reason"][i], advice=_array(state["advice"][i]),
                        ratings=[(_array(a), None if r is None else float(r)) for a, r in state["ratings"][i]], step=state["step"][i],
                    )
                )
        stats = state.get("stats")
        if stats is not None:
            self.stats = RunningMeanStd(mean=stats["mean"].numpy(), std=stats["var"].numpy(), clip_max=None)
            self.stats.count = stats["count"]
        self.rebuild()


def _array(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    return np.asarray(value, dtype=np.float32)


def _same(a: Any, b: Any) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))

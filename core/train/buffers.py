"""Replay buffers of single-agent runs: Tianshou's uniform or prioritized vector buffers from config,
and :class:`MixedReplayBuffer`, the agent's replay plus a second source sampled at a fixed ratio.

Prioritized replay is Tianshou's own: ``PrioritizedVectorReplayBuffer`` attaches importance weights to
each sampled batch (``batch.weight``), Tianshou's DQN and SAC multiply their TD losses by them and
write the new TD errors back as the batch's ``weight``, and ``Algorithm._postprocess_batch`` hands
those to ``buffer.update_weight``. :class:`MixedReplayBuffer` plugs into the same convention.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tianshou.data import Batch, ReplayBuffer, ReplayBufferManager, SegmentTree, to_numpy

from guidedrl.guidance import ADVISED_BY_KEY, BONUS_KEY

if TYPE_CHECKING:
    from guidedrl.config import RunConfig


def make_replay_buffer(config: RunConfig, size: int, num_envs: int) -> ReplayBuffer:
    """The training buffer of a run: one sub-buffer per env; prioritized when ``replay.prioritized``
    (off-policy algorithms only; on-policy data is used once, in order)."""
    from tianshou.data import PrioritizedVectorReplayBuffer, VectorReplayBuffer

    from guidedrl.train.algorithms import ALGORITHMS

    size = max(size, num_envs)
    r = config.replay
    if r.prioritized and not ALGORITHMS.get(config.algo).on_policy:
        return PrioritizedVectorReplayBuffer(size, num_envs, alpha=r.alpha, beta=r.beta)
    return VectorReplayBuffer(size, num_envs)


def anneal_beta(buffer: Any, config: RunConfig, env_steps: int) -> None:
    """Set a prioritized buffer's importance-sampling exponent for the env steps done so far: linear
    from ``replay.beta`` to ``replay.beta_final`` over ``replay.beta_anneal_steps`` (from the env steps
    alone, so a resumed run continues the schedule)."""
    r = config.replay
    if not hasattr(buffer, "set_beta") or r.beta_anneal_steps <= 0:
        return
    from tianshou.data import PrioritizedReplayBuffer

    beta = r.beta + min(1.0, env_steps / r.beta_anneal_steps) * (r.beta_final - r.beta)
    buffer.set_beta(beta)
    if isinstance(buffer, PrioritizedReplayBuffer):
        # Tianshou 2.0.1's PrioritizedVectorReplayBuffer.set_beta reaches only its sub-buffers, but a
        # sampled batch's weights are computed with the vector buffer's own beta
        PrioritizedReplayBuffer.set_beta(buffer, beta)


class MixedReplayBuffer(ReplayBufferManager):
    """Two sources in one Tianshou buffer, sampled at ratio ``ratio``, with weights that reach the loss.

    - the **agent's replay** (D_RL): sub-buffers ``0 .. buffer_num-1``, one per training env, filled by
      the collector exactly like a ``VectorReplayBuffer(total_size, buffer_num)``;
    - the **second source** (D_2, e.g. LLM-refined or demonstrated transitions): the last sub-buffer
      (``second_size`` transitions), filled with :meth:`add_second`.

    :meth:`sample` draws ``Binomial(n, ratio)`` transitions from D_2 and the rest from D_RL (all from
    the one that is not empty when the other is), each source uniformly or — with ``alpha`` — in
    proportion to its priority ``|TD error| ** alpha``. Every sampled batch carries ``batch.weight``
    (Tianshou's convention: DQN's and SAC's TD losses multiply by it), the product of

    - the transition's own weight (:meth:`add_second`'s ``weight``, :meth:`set_weight`; 1 by default),
    - the source's weight (``second_weight`` for D_2, 1 for D_RL), and
    - with ``alpha``: the importance-sampling correction ``(p / p_min) ** -beta`` within the source,
      normalised by its largest value in the batch (as Tianshou's prioritized buffer does).

    After an update, Tianshou calls :meth:`update_weight` with the batch's TD errors; with ``alpha``
    they become the sampled transitions' priorities. Both sources share one index space (n-step
    returns, ``set_bonus`` and ``buffer[indices]`` work as on any Tianshou buffer).

    Example (ACE: LLM-refined transitions at a quarter of each batch, with their own weights)::

        buffer = MixedReplayBuffer(100_000, num_envs, 20_000, ratio=0.25, alpha=0.6)
        collector = GuidedCollector(algorithm, envs, buffer, ...)   # D_RL, as usual
        buffer.add_second(refined_batch, weight=importance)          # D_2: obs, act, rew, obs_next, terminated, truncated
        algorithm.update(buffer=buffer, sample_size=256)             # mixed batch, weights in the loss
    """

    def __init__(
        self,
        total_size: int,
        buffer_num: int,
        second_size: int,
        *,
        ratio: float,
        second_weight: float = 1.0,
        alpha: float | None = None,
        beta: float = 0.4,
    ) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"MixedReplayBuffer: ratio is the share of the second source per batch, in [0, 1]; got {ratio}")
        if alpha is not None and alpha <= 0:
            raise ValueError(f"MixedReplayBuffer: alpha must be > 0 (or None for uniform sampling); got {alpha}")
        size = int(np.ceil(total_size / buffer_num))
        super().__init__([ReplayBuffer(size) for _ in range(buffer_num)] + [ReplayBuffer(second_size)])
        self.ratio = ratio
        self.second_weight = second_weight
        self.alpha, self.beta = alpha, beta
        self.second_id = buffer_num
        """The sub-buffer id of the second source."""
        self._split = int(self._offset[buffer_num])  # D_RL is [0, split), D_2 is [split, maxsize)
        self._prio = SegmentTree(self.maxsize)  # sampling mass per index (0 for empty slots)
        self._max_prio = self._min_prio = 1.0
        self._own_weight = np.ones(self.maxsize)

    # -- filling -------------------------------------------------------------------------------
    def add(self, batch: Any, buffer_ids: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, ...]:
        ptr, ep_rew, ep_len, ep_idx = super().add(batch, buffer_ids)
        self._prio[ptr] = self._max_prio ** (self.alpha or 1.0)  # new transitions: the highest priority
        self._own_weight[ptr] = 1.0
        return ptr, ep_rew, ep_len, ep_idx

    def add_second(self, batch: Batch, weight: Any = None) -> np.ndarray:
        """Append transitions (``obs``, ``act``, ``rew``, ``obs_next``, ``terminated``, ``truncated``;
        optionally ``policy``) to the second source, in order (consecutive rows of one trajectory stay
        consecutive, so n-step returns run along it; end a trajectory with ``terminated`` or
        ``truncated``). ``weight``: one per row (or one number), the rows' own loss weights. Rows
        without a ``policy`` record get "not advised, no bonus". Returns their buffer indices."""
        n = len(batch)
        batch = Batch(batch)
        if "info" not in batch.get_keys():
            batch.info = Batch()
        if "policy" not in batch.get_keys():
            batch.policy = Batch(
                advised=np.zeros(n, dtype=bool), **{ADVISED_BY_KEY: np.full(n, -1, dtype=np.int64), BONUS_KEY: np.zeros(n)}
            )
        indices = np.zeros(n, dtype=np.int64)
        for i in range(n):  # Tianshou's add takes one row per sub-buffer
            indices[i] = self.add(batch[i : i + 1], buffer_ids=[self.second_id])[0][0]
        if weight is not None:
            self.set_weight(indices, weight)
        return indices

    def set_weight(self, indices: Any, weight: Any) -> None:
        """Set the own loss weight of the transitions at ``indices`` (e.g. ACE's importance weights)."""
        indices = np.asarray(indices, dtype=np.int64)
        self._own_weight[indices] = np.broadcast_to(np.asarray(weight, dtype=np.float64), indices.shape)

    def set_priority(self, indices: Any, priority: Any) -> None:
        """Set the sampling priority of the transitions at ``indices`` (before ``alpha`` is applied, like
        a TD error; e.g. ACE's reward-based importance). Without ``alpha`` sampling stays uniform."""
        if self.alpha is None:
            return
        indices = np.asarray(indices, dtype=np.int64)
        p = np.broadcast_to(np.abs(np.asarray(priority, dtype=np.float64)), indices.shape) + np.finfo(np.float32).eps
        self._prio[indices] = p**self.alpha
        self._max_prio = max(self._max_prio, float(p.max()))
        self._min_prio = min(self._min_prio, float(p.min()))

    @property
    def max_priority(self) -> float:
        """The largest priority (|TD error|) seen so far; new transitions start at it."""
        return self._max_prio

    def second_len(self) -> int:
        """Transitions held by the second source."""
        return len(self.buffers[self.second_id])

    # -- sampling ------------------------------------------------------------------------------
    def sample_indices(self, batch_size: int | None) -> np.ndarray:
        if batch_size is None or batch_size <= 0 or len(self) == 0:
            return super().sample_indices(batch_size)
        n_second = len(self.buffers[self.second_id])
        n_first = len(self) - n_second
        k = int(np.random.binomial(batch_size, self.ratio)) if n_first and n_second else (batch_size if n_second else 0)
        return np.concatenate([self._draw(0, self._split, batch_size - k), self._draw(self._split, self.maxsize, k)])

    def _draw(self, lo: int, hi: int, n: int) -> np.ndarray:
        """``n`` indices from ``[lo, hi)`` in proportion to their sampling mass (a prefix-sum search,
        offset by the mass before ``lo``)."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        before, mass = self._prio.reduce(0, lo) if lo else 0.0, self._prio.reduce(lo, hi)
        total = self._prio.reduce()
        # float rounding can put ``before + mass`` at (or past) the tree's total, which it rejects
        value = np.minimum(before + np.random.rand(n) * mass, np.nextafter(total, 0.0))
        idx = self._prio.get_prefix_sum_idx(value)
        return np.clip(np.asarray(idx, dtype=np.int64), lo, hi - 1)

    def sample(self, batch_size: int | None) -> tuple[Batch, np.ndarray]:
        indices = self.sample_indices(batch_size)
        batch = self[indices]
        batch.weight = self.weights(indices)
        return batch, indices

    def weights(self, indices: np.ndarray) -> np.ndarray:
        """The loss weight of each sampled index (see the class docstring)."""
        indices = np.asarray(indices, dtype=np.int64)
        second = indices >= self._split
        w = self._own_weight[indices] * np.where(second, self.second_weight, 1.0)
        if self.alpha is not None and len(indices):
            is_w = (self._prio[indices] / self._min_prio ** self.alpha) ** (-self.beta)
            for part in (second, ~second):
                if part.any():
                    is_w[part] = is_w[part] / is_w[part].max()
            w = w * is_w
        return w

    # -- priorities ----------------------------------------------------------------------------
    def update_weight(self, index: np.ndarray, new_weight: Any) -> None:
        """Tianshou calls this after each update with the batch's TD errors: with ``alpha`` they become
        the priorities of those transitions; without, nothing changes."""
        if self.alpha is None:
            return
        td = np.abs(to_numpy(new_weight)).reshape(-1) + np.finfo(np.float32).eps
        self._prio[np.asarray(index, dtype=np.int64)] = td**self.alpha
        self._max_prio = max(self._max_prio, float(td.max()))
        self._min_prio = min(self._min_prio, float(td.min()))

    def set_beta(self, beta: float) -> None:
        """The importance-sampling exponent (``anneal_beta`` sets it from config)."""
        self.beta = beta


__all__ = ["MixedReplayBuffer", "anneal_beta", "make_replay_buffer"]

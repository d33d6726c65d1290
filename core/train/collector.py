"""The training collector: Tianshou's ``Collector`` plus ``refine_action``, the bonus column and
episode hand-off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tianshou.data import Batch, Collector

from guidedrl import guidance
from guidedrl.train import hooks
from guidedrl.types import Episode

if TYPE_CHECKING:
    from guidedrl.context import RunContext


class GuidedCollector(Collector):
    """Calls ``refine_action`` once per vectorised step and keeps finished episodes for
    ``identify_critical_states``. Used for training data only; evaluation uses a plain Collector.

    Every stored transition gets ``policy.advised`` (bool), ``policy.advised_by`` (the advising
    method's index in ``ctx.methods``, -1: none) and ``policy.bonus`` (0 until
    :meth:`shape_new_transitions` sets it; see :mod:`guidedrl.guidance`). The buffer indices written
    since the last :meth:`shape_new_transitions` are remembered, so each transition meets
    ``shape_reward`` exactly once.

    Episodes are assembled here, step by step per env, rather than read back from the buffer:
    on-policy runs clear the buffer after each update, which would cut episodes that span one.
    """

    def __init__(self, *args: Any, ctx: RunContext, hook_set: hooks.HookSet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx = ctx
        self.hook_set = hook_set
        self.finished: list[Episode] = []
        self._ready_ids: np.ndarray | None = None
        self._partial: dict[int, dict[str, list[Any]]] = {}
        self._started_at: dict[int, int] = {}
        self._steps_seen = 0
        self._new: list[np.ndarray] = []
        if hook_set.critical_states:
            self.set_on_step_hook(self._record_step)

    def _compute_action_policy_hidden(
        self,
        random: bool,
        ready_env_ids_R: np.ndarray,
        last_obs_RO: np.ndarray,
        last_info_R: np.ndarray,
        last_hidden_state_RH: Any = None,
    ) -> Any:
        self._ready_ids = ready_env_ids_R
        if self.buffer is not None:
            self._new.append(self._next_insertion_indices(ready_env_ids_R))
        out = super()._compute_action_policy_hidden(
            random, ready_env_ids_R, last_obs_RO, last_info_R, last_hidden_state_RH
        )
        n = len(ready_env_ids_R)
        advised = np.zeros(n, dtype=bool)
        advised_by = np.full(n, -1, dtype=np.int64)
        if self.hook_set.refine_action and not random:
            advice = hooks.refine_action(
                self.ctx, obs=last_obs_RO, act=out.act_normalized, info=last_info_R, env_ids=ready_env_ids_R,
                action_space=getattr(self.policy, "action_space", None),
            )
            if advice is not None and advice.mask.any():
                mask = advice.mask
                env_act = np.array(out.act_normalized, copy=True)
                env_act[mask] = np.asarray(advice.act, dtype=env_act.dtype)[mask]
                policy_act = np.array(out.act, copy=True)
                policy_act[mask] = self.policy.map_action_inverse(env_act[mask])
                out.act_normalized, out.act = env_act, policy_act
                advised = mask
                advised_by[mask] = guidance.advising_method_code(self.ctx, advice.source)
        policy_entry = out.policy_entry if isinstance(out.policy_entry, Batch) else Batch()
        policy_entry.advised = advised
        policy_entry[guidance.ADVISED_BY_KEY] = advised_by
        policy_entry[guidance.BONUS_KEY] = np.zeros(n, dtype=np.float64)
        out.policy_entry = policy_entry
        return out

    def _next_insertion_indices(self, env_ids: np.ndarray) -> np.ndarray:
        """Where the buffer's next ``add`` for these envs will write (called just before it)."""
        buffer = self.buffer
        subs = getattr(buffer, "buffers", None)
        if subs is None:  # a single ReplayBuffer
            return np.asarray([buffer._insertion_idx], dtype=np.int64)
        # Tianshou's ReplayBufferManager.add writes row i at offset[env] + that sub-buffer's insertion index
        return np.asarray([buffer._offset[e] + subs[e]._insertion_idx for e in env_ids], dtype=np.int64)

    def new_indices(self) -> np.ndarray:
        """Buffer indices written since the last :meth:`shape_new_transitions`, oldest first, each once
        (a slot the buffer overwrote within one collection is listed at its last write)."""
        if not self._new:
            return np.zeros(0, dtype=np.int64)
        written = np.concatenate(self._new)
        _, last = np.unique(written[::-1], return_index=True)
        return written[::-1][np.sort(last)][::-1]

    def shape_new_transitions(self) -> dict[str, float]:
        """``shape_reward`` on every transition collected since the last call, in one call, and the
        summed bonus stored with each (``rew`` = env reward + bonus). Returns stats."""
        indices = self.new_indices()
        self._new = []
        if not len(indices) or not self.hook_set.shape_reward:
            return {}
        bonus = hooks.shape_reward(self.ctx, self.buffer[indices])
        if bonus is None:
            return {}
        # added to what is there: new transitions hold 0, unless a method already set a bonus on one
        # in identify_critical_states (ACE's critic reassigns the last steps of a finished episode)
        guidance.set_bonus(self.buffer, indices, guidance.bonus_of(self.buffer[indices]) + np.asarray(bonus))
        self.ctx.counters["shaped_transitions"] += len(indices)
        return {"guidance/bonus_mean": float(np.mean(bonus))}

    def reset_buffer(self, keep_statistics: bool = False) -> None:
        super().reset_buffer(keep_statistics=keep_statistics)
        self._new = []

    def _record_step(self, action_batch: Any, step: Any) -> None:
        env_act = np.asarray(action_batch.act_normalized)
        for row, env_id in enumerate(np.asarray(self._ready_ids).tolist()):
            if env_id not in self._partial:
                self._partial[env_id] = {"obs": [], "act": [], "rew": [], "obs_next": [], "indices": []}
                self._started_at[env_id] = self.ctx.env_steps + self._steps_seen
            part = self._partial[env_id]
            part["obs"].append(step.obs[row])
            part["act"].append(env_act[row])
            part["rew"].append(float(step.rew[row]))
            part["obs_next"].append(step.obs_next[row])
            if self.buffer is not None and self._new:
                part["indices"].append(int(self._new[-1][row]))  # where this step was written
            if step.done[row]:
                del self._partial[env_id]
                self.finished.append(
                    Episode(
                        obs=np.stack(part["obs"]),
                        act=np.stack(part["act"]),
                        rew=np.asarray(part["rew"]),
                        obs_next=np.stack(part["obs_next"]),
                        terminated=bool(step.terminated[row]),
                        env_id=env_id,
                        start_step=self._started_at.pop(env_id),
                        indices=np.asarray(part["indices"], dtype=np.int64)
                        if len(part["indices"]) == len(part["rew"])
                        else None,
                    )
                )
        self._steps_seen += len(self._ready_ids)

    def restart_episodes(self, seeds: list[int]) -> None:
        """End the episodes in progress and start new ones from ``seeds`` (one per env).

        The runner calls this at every epoch boundary, so that a run resumed from that epoch's
        checkpoint continues from the same env states as the uninterrupted run (runner/seeding.py).
        In a replay buffer the cut episodes end as truncated (bootstrapped, like a time limit), so
        n-step targets do not run on into the next episode; the loop has handed the episodes in
        progress to ``identify_critical_states`` already (:meth:`cut_running`).
        """
        if self.buffer is not None:
            self._truncate_open_episodes()
        self.env.seed(seeds)
        self.reset_env()
        self._partial.clear()
        self._started_at.clear()

    def _truncate_open_episodes(self) -> None:
        # Tianshou has no public call for "end these episodes here"; its buffers keep the running
        # episode in ``last_index`` and ``_ep_*`` of each sub-buffer, so that is what is set.
        buffer = self.buffer
        buffers = getattr(buffer, "buffers", [buffer])
        offsets = getattr(buffer, "_offset", [0] * len(buffers))
        for sub, offset in zip(buffers, offsets, strict=True):
            if len(sub):
                last = int(sub.last_index[0])
                if not buffer.done[offset + last]:  # the manager's arrays (a sub-buffer's may be a copy)
                    buffer.truncated[offset + last] = True
                    buffer.done[offset + last] = True
            # the buffer's running episode statistics restart too (Tianshou keeps them across
            # on-policy buffer resets; a resumed run starts them at zero)
            sub._ep_return, sub._ep_len, sub._ep_start_idx = 0.0, 0, sub._insertion_idx

    def cut_running(self) -> list[Episode]:
        """The episodes in progress, as trajectory chunks that end here (``terminated=False``), in env
        order; they are forgotten (the loop restarts every env right after, ``restart_episodes``)."""
        cut = []
        for env_id in sorted(self._partial):
            part = self._partial[env_id]
            cut.append(
                Episode(
                    obs=np.stack(part["obs"]), act=np.stack(part["act"]), rew=np.asarray(part["rew"]),
                    obs_next=np.stack(part["obs_next"]), terminated=False, env_id=env_id,
                    start_step=self._started_at[env_id],
                    indices=np.asarray(part["indices"], dtype=np.int64) if len(part["indices"]) == len(part["rew"]) else None,
                )
            )
        self._partial.clear()
        self._started_at.clear()
        return cut

    def pop_finished(self) -> list[Episode]:
        """Episodes finished since the last call, oldest first."""
        finished, self.finished = self.finished, []
        self._steps_seen = 0
        return finished

"""The training collector: Tianshou's ``Collector`` plus ``refine_action``, the bonus column and
episode hand-off."""

from __future__ import annotations

from copy import copy
from typing import TYPE_CHECKING, Any

import numpy as np
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.data import Batch, Collector

# Tianshou's own helpers (private; tianshou is pinned to 2.0.x in pyproject.toml)
from tianshou.data.collector import _dict_of_arr_to_arr_of_dicts, _HACKY_create_info_batch
from tianshou.data.utils.converter import to_numpy
from tianshou.utils.net.common import Net

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

    lean_steps = True
    """``collect(n_step=...)`` runs :meth:`_collect_steps` (the same buffer contents, returns and RNG
    draws as Tianshou's ``_collect``, less Python per step), and a Q-network's actions skip the
    policy's ``Batch``es (:meth:`_q_policy_action`); ``False``: Tianshou's loop and forward pass."""

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
        self._info_cache: tuple[np.ndarray, Batch] | None = None
        self._plain_q = type(self.policy) is DiscreteQLearningPolicy and type(self.policy.model) is Net
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
        if random:
            out = super()._compute_action_policy_hidden(
                random, ready_env_ids_R, last_obs_RO, last_info_R, last_hidden_state_RH
            )
        else:
            out = self._policy_action(last_obs_RO, last_info_R, last_hidden_state_RH)
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

    def _policy_action(self, last_obs_RO: np.ndarray, last_info_R: np.ndarray, last_hidden_state_RH: Any) -> Batch:
        """Tianshou's ``Collector._compute_action_policy_hidden`` for policy actions, line for line,
        except that the info rows reach the policy through :meth:`_info_batch` (Tianshou rebuilds
        the Batch from the dicts on every step, Python time that grows with the number of envs)."""
        if self.lean_steps and self._plain_q and last_hidden_state_RH is None and isinstance(last_obs_RO, np.ndarray):
            return self._q_policy_action(last_obs_RO)
        obs_batch_R = Batch(obs=last_obs_RO, info=self._info_batch(last_info_R))
        act_batch_RA = self.policy(obs_batch_R, last_hidden_state_RH)
        act_RA = to_numpy(act_batch_RA.act)
        if self.exploration_noise:
            act_RA = self.policy.add_exploration_noise(act_RA, obs_batch_R)
        act_normalized_RA = self.policy.map_action(act_RA)
        policy_R = act_batch_RA.get("policy", Batch())
        if not isinstance(policy_R, Batch):
            raise RuntimeError(f"The policy result should be a {Batch}, but got {type(policy_R)}")
        hidden_state_RH = act_batch_RA.get("state", None)
        if hidden_state_RH is not None:
            policy_R.hidden_state = hidden_state_RH
        return Batch(
            act=act_RA, act_normalized=act_normalized_RA, policy_entry=policy_R, dist=act_batch_RA.get("dist"),
            hidden_state=hidden_state_RH,
        )

    def _q_policy_action(self, obs_RO: np.ndarray) -> Batch:
        """:meth:`_policy_action` for Tianshou's Q-learning policy on a ``Net`` and array observations
        (no action mask): ``DiscreteQLearningPolicy.forward`` is the network's argmax, which the ``Net``
        computes without the info rows; the same exploration noise (Tianshou's, same draws). Hand-written
        to skip the ``Batch``es around the network's input and output on every env step."""
        policy = self.policy
        act_RA = to_numpy(policy.model(obs_RO)[0].argmax(dim=1))
        if self.exploration_noise:
            act_RA = policy.add_exploration_noise(act_RA, Batch(obs=obs_RO))
        return Batch(act=act_RA, act_normalized=policy.map_action(act_RA), policy_entry=Batch(), dist=None, hidden_state=None)

    def _info_batch(self, info_R: np.ndarray) -> Batch:
        """The info rows as the policy's ``batch.info``: what Tianshou's ``_HACKY_create_info_batch``
        makes of them. Reused when these are the very rows the last step's :meth:`_step_info` stacked
        (no env was reset since; they are never changed in place), stacked the same way when every row
        holds the same numeric keys, and Tianshou's function otherwise (e.g. rows just reset: ``{}``)."""
        cached = self._info_cache
        if cached is not None and cached[0] is info_R:
            return cached[1]
        fast = _stack_numeric_infos(info_R)
        return fast if fast is not None else _HACKY_create_info_batch(info_R)

    def _step_info(self, info_R: np.ndarray) -> Any:
        """The info rows as the buffer stores them (what ``Batch(info=info_R)`` makes of them)."""
        fast = _stack_numeric_infos(info_R)
        if fast is None:
            return Batch(info=info_R).info
        self._info_cache = (info_R, fast)
        return fast

    def _collect(
        self,
        n_step: int | None = None,
        n_episode: int | None = None,
        random: bool = False,
        render: float | None = None,
        gym_reset_kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if n_step is None or not self.lean_steps or render or self.env.is_async or self.get_on_episode_done_hook():
            return super()._collect(
                n_step=n_step, n_episode=n_episode, random=random, render=render, gym_reset_kwargs=gym_reset_kwargs
            )
        return self._collect_steps(n_step, random, gym_reset_kwargs or {})

    def _collect_steps(self, n_step: int, random: bool, gym_reset_kwargs: dict[str, Any]) -> Any:
        """Tianshou's ``Collector._collect`` for ``n_step`` collection (steps 2-15 of its docstring),
        without what costs Python time per step and changes nothing stored or learnt: the action
        distribution's standard deviation for ``CollectStats`` (unused here; ``pred_dist_std_array``
        stays ``None``, as in random collection), episodes read back from the buffer for the
        episode-done hook (there is none; so ``lens`` count every step of an episode, where Tianshou
        counts what the buffer still holds of it), copies of observations and infos when no env was
        reset, and info dicts stacked twice per step. Hand-written because Tianshou's loop is one
        method with no smaller part to override. The step hook gets the step batch without ``dist``."""
        ready_env_ids_R = np.arange(self.env_num)
        if self._pre_collect_obs_RO is None or self._pre_collect_info_R is None:
            raise ValueError(
                "Initial obs and info should not be None. Either reset the collector (using reset or reset_env) "
                "or pass reset_before_collect=True to collect."
            )
        stats = self.collect_stats_class()
        last_obs_RO, last_info_R = self._pre_collect_obs_RO, self._pre_collect_info_R
        last_hidden_state_RH = self._pre_collect_hidden_state_RH
        step_count, episodes = 0, 0
        returns: list[float] = []
        lens: list[int] = []
        while True:
            action_R = self._compute_action_policy_hidden(
                random=random, ready_env_ids_R=ready_env_ids_R, last_obs_RO=last_obs_RO, last_info_R=last_info_R,
                last_hidden_state_RH=last_hidden_state_RH,
            )
            obs_next_RO, rew_R, terminated_R, truncated_R, info_R = self.env.step(action_R.act_normalized, ready_env_ids_R)
            if isinstance(info_R, dict):  # envpool: a dict of arrays
                info_R = _dict_of_arr_to_arr_of_dicts(info_R)
            done_R = np.logical_or(terminated_R, truncated_R)
            step_R = Batch(
                obs=last_obs_RO, act=action_R.act, policy=action_R.policy_entry, obs_next=obs_next_RO, rew=rew_R,
                terminated=terminated_R, truncated=truncated_R, done=done_R, info=self._step_info(info_R),
            )
            self.run_on_step_hook(action_R, step_R)
            step_count += len(ready_env_ids_R)
            insertion_idx_R, ep_return_R, ep_len_R, _ = self.buffer.add(step_R, buffer_ids=ready_env_ids_R)
            last_obs_RO, last_info_R = obs_next_RO, info_R
            last_hidden_state_RH = action_R.hidden_state
            if done_R.any():
                done_D = np.flatnonzero(done_R)
                returns.extend(ep_return_R[done_D].tolist())
                lens.extend(ep_len_R[done_D].tolist())
                episodes += len(done_D)
                obs_reset_DO, info_reset_D = self.env.reset(env_id=ready_env_ids_R[done_D], **gym_reset_kwargs)
                # copied before the reset rows go in: the step batch (and the step hook) hold these arrays
                last_obs_RO, last_info_R = last_obs_RO.copy(), last_info_R.copy()
                last_hidden_state_RH = copy(last_hidden_state_RH)
                self._reset_hidden_state_based_on_type(done_D, last_hidden_state_RH)
                last_obs_RO[done_D] = obs_reset_DO
                last_info_R[done_D] = info_reset_D
            if step_count >= n_step:
                break
        stats.n_collected_steps = step_count
        stats.n_collected_episodes = episodes
        stats.returns = np.asarray(returns, dtype=float)
        stats.lens = np.asarray(lens, dtype=int)
        self.collect_step += step_count
        self.collect_episode += episodes
        self._pre_collect_obs_RO, self._pre_collect_info_R = last_obs_RO, last_info_R
        self._pre_collect_hidden_state_RH = last_hidden_state_RH
        return stats

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


def _stack_numeric_infos(info_R: Any) -> Batch | None:
    """Info dicts stacked into a Batch as Tianshou's ``Batch`` stacks them (each value through
    ``np.asanyarray``, then ``np.stack`` per key), when every row is a non-empty dict with the same
    keys and every value is a number or a numeric array; ``None`` otherwise (the caller falls back to
    Tianshou). Tianshou's general path costs tens of microseconds per row and step."""
    if not isinstance(info_R, np.ndarray) or info_R.dtype != object or info_R.ndim != 1 or not len(info_R):
        return None
    first = info_R[0]
    if not isinstance(first, dict) or not first:
        return None
    keys = first.keys()
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    for row in info_R:
        if type(row) is not dict or row.keys() != keys:
            return None
        for key, value in row.items():
            # numbers and numeric arrays only: Tianshou keeps tensors, nests dicts, and makes object
            # arrays of the rest, which this does not repeat
            if type(value) not in _PLAIN_NUMBERS and not (
                isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "biuf"
            ):
                return None
            columns[key].append(np.asanyarray(value))
    out = Batch()
    for key, values in columns.items():
        try:
            stacked = np.stack(values)
        except ValueError:  # rows of different shapes: Tianshou falls back to an object array
            return None
        if stacked.dtype.kind not in "biuf":  # e.g. an int too large for int64
            return None
        out.__dict__[key] = stacked
    return out


_PLAIN_NUMBERS = (bool, int, float)

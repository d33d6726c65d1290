"""The training collector: Tianshou's ``Collector`` plus ``refine_action`` and episode hand-off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tianshou.data import Batch, Collector

from guidedrl.runner import hooks
from guidedrl.types import Episode

if TYPE_CHECKING:
    from guidedrl.context import RunContext


class GuidedCollector(Collector):
    """Calls ``refine_action`` once per vectorised step and keeps finished episodes for
    ``identify_critical_states``. Used for training data only; evaluation uses a plain Collector."""

    def __init__(self, *args: Any, ctx: RunContext, hook_set: hooks.HookSet, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx = ctx
        self.hook_set = hook_set
        self.finished: list[Episode] = []
        if hook_set.critical_states:
            self.set_on_episode_done_hook(self._keep_episode)

    def _compute_action_policy_hidden(
        self,
        random: bool,
        ready_env_ids_R: np.ndarray,
        last_obs_RO: np.ndarray,
        last_info_R: np.ndarray,
        last_hidden_state_RH: Any = None,
    ) -> Any:
        out = super()._compute_action_policy_hidden(
            random, ready_env_ids_R, last_obs_RO, last_info_R, last_hidden_state_RH
        )
        if not self.hook_set.refine_action:
            return out
        advised = np.zeros(len(ready_env_ids_R), dtype=bool)
        if not random:
            advice = hooks.refine_action(
                self.ctx, obs=last_obs_RO, act=out.act_normalized, info=last_info_R, env_ids=ready_env_ids_R
            )
            if advice is not None and advice.mask.any():
                mask = advice.mask
                env_act = np.array(out.act_normalized, copy=True)
                env_act[mask] = np.asarray(advice.act, dtype=env_act.dtype)[mask]
                policy_act = np.array(out.act, copy=True)
                policy_act[mask] = self.policy.map_action_inverse(env_act[mask])
                out.act_normalized, out.act = env_act, policy_act
                advised = mask
        policy_entry = out.policy_entry if isinstance(out.policy_entry, Batch) else Batch()
        policy_entry.advised = advised
        out.policy_entry = policy_entry
        return out

    def _keep_episode(self, episode_batch: Any) -> None:
        self.finished.append(
            Episode(
                obs=np.asarray(episode_batch.obs),
                act=np.asarray(self.policy.map_action(episode_batch.act)),
                rew=np.asarray(episode_batch.rew, dtype=np.float64),
                obs_next=np.asarray(episode_batch.obs_next),
                terminated=bool(np.asarray(episode_batch.terminated)[-1]),
                start_step=self.ctx.env_steps,
            )
        )
        return None

    def pop_finished(self) -> list[Episode]:
        finished, self.finished = self.finished, []
        return finished

"""ULTRA, phase 3 — policy update on the guided trajectories.

The trajectories collected with ULTRA's guidance are the training data of the ordinary update (PPO or
SAC; DQN works too). The implicit rewards enter through ``shape_reward``. The LLM's actions need one
more term: PPO cannot learn from actions it did not sample (the core gives advised steps advantage 0),
so ULTRA adds an *imitation loss* toward its advice on the transitions it advised:

- PPO, discrete actions: negative log-likelihood of the advised action under the policy;
- PPO, continuous actions: mean squared error between the policy's mean action and the advice (a
  log-likelihood would also shrink the policy's learnt standard deviation toward the imitation error
  and so stop PPO's exploration; the benchmark on Hopper showed exactly that);
- SAC: mean squared error between the actor's (squashed) mean action and the advised action;
- DQN: cross-entropy with the Q-values as logits.

(All four are ``guidedrl.guidance.imitation_loss``.) A transition counts as ULTRA's when the
collector recorded ULTRA as the method that advised it (``guidance.advised_by(ctx, batch, "ultra")``),
so advice from another method mixed into the same run is left to that method. On an advised step the
executed (stored) action *is* the advice, so that is the imitation target. With ``imitate_table`` the
stored critical states themselves are imitated too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from guidedrl import guidance
from guidedrl.types import PolicyUpdate
from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.improvement import env_actions
from guidedrl_ultra.state import UltraState

if TYPE_CHECKING:
    from guidedrl.context import RunContext


NAME = "ultra"
"""The method's name in a run (its entry point), what ``guidance.advised_by`` is asked about."""


def own_advised(ctx: RunContext, batch: Any) -> tuple[np.ndarray, list[Any]]:
    """Rows of ``batch`` that ULTRA advised, and the advised (env-space) action of each: the
    executed action, which on an advised step is the advice."""
    rows = np.nonzero(guidance.advised_by(ctx, batch, NAME))[0]
    if not len(rows):
        return rows, []
    return rows, list(env_actions(ctx, batch.act[rows]))


def update_policy(ctx: RunContext, config: UltraConfig, st: UltraState, batch: Any, algorithm: Any) -> PolicyUpdate | None:
    """The imitation loss toward ULTRA's advice (variants with A), or ``None`` when there is none."""
    if not config.advises or config.imitation_weight == 0 or len(st.table) == 0:
        return None
    rows, targets = own_advised(ctx, batch)
    obs: list[Any] = []
    act: list[Any] = []
    if len(rows):
        pick = ctx.rng.choice(len(rows), size=min(config.imitation_batch, len(rows)), replace=False)
        obs.extend(np.asarray(batch.obs)[rows[pick]])
        act.extend(targets[j] for j in pick)
    n_rollout = len(obs)
    if config.imitate_table:
        advised = [e for e in st.table.entries if e.advice is not None]
        if advised:
            pick = ctx.rng.choice(len(advised), size=min(config.imitation_batch, len(advised)), replace=False)
            obs.extend(advised[j].obs for j in pick)
            act.extend(advised[j].advice for j in pick)
    if not obs:
        return None
    loss = imitation(algorithm, np.stack(obs), np.stack([np.asarray(a) for a in act]), config.imitation_continuous)
    return PolicyUpdate(
        losses={"imitation": config.imitation_weight * loss},
        stats={"imitation_rollout": float(n_rollout), "imitation_table": float(len(obs) - n_rollout)},
    )


def imitation(algorithm: Any, obs: np.ndarray, act: np.ndarray, continuous: str = "mse") -> Any:
    """The imitation loss of ``algorithm``'s policy toward env-space actions ``act`` at ``obs``."""
    return guidance.imitation_loss(algorithm.policy, obs, act, continuous=continuous)

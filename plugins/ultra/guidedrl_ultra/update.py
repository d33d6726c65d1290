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

(All four are ``guidedrl.guidance.imitation_loss``.) A transition counts as ULTRA's
when the collector marked it advised (``batch.policy.advised``) and its observation matches a critical
state whose advice equals the executed action — so advice from another method mixed into the same run
is left to that method. With ``imitate_table`` the stored critical states themselves are imitated too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from guidedrl.types import PolicyUpdate
from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.improvement import env_actions
from guidedrl_ultra.state import UltraState

if TYPE_CHECKING:
    from guidedrl.context import RunContext


def own_advised(ctx: RunContext, st: UltraState, batch: Any) -> tuple[np.ndarray, list[Any]]:
    """Rows of ``batch`` that ULTRA advised, and the advised (env-space) action of each."""
    key = (id(batch), len(batch), ctx.env_steps)
    if st.update_cache is not None and st.update_cache[:3] == key:
        return st.update_cache[3], st.update_cache[4]
    rows, targets = np.zeros(0, dtype=np.int64), []
    advised = _advised_mask(batch)
    if advised is not None and advised.any() and len(st.table):
        candidates = np.nonzero(advised)[0]
        idx = st.table.match(np.asarray(batch.obs)[candidates])
        executed = env_actions(ctx, batch.act[candidates])
        keep = []
        for row, i, action in zip(candidates, idx, executed, strict=True):
            advice = st.table.entries[i].advice if i >= 0 else None
            if advice is not None and np.allclose(np.asarray(advice, dtype=np.float64), np.asarray(action, dtype=np.float64), atol=1e-4):
                keep.append(row)
                targets.append(advice)
        rows = np.asarray(keep, dtype=np.int64)
    st.update_cache = (*key, rows, targets)
    return rows, targets


def update_policy(ctx: RunContext, config: UltraConfig, st: UltraState, batch: Any, algorithm: Any) -> PolicyUpdate | None:
    """The imitation loss toward ULTRA's advice (variants with A), or ``None`` when there is none."""
    if not config.advises or config.imitation_weight == 0 or len(st.table) == 0:
        return None
    rows, targets = own_advised(ctx, st, batch)
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
    loss = imitation(algorithm, np.stack(obs), np.stack([np.asarray(a) for a in act]))
    return PolicyUpdate(
        losses={"imitation": config.imitation_weight * loss},
        stats={"imitation_rollout": float(n_rollout), "imitation_table": float(len(obs) - n_rollout)},
    )


def imitation(algorithm: Any, obs: np.ndarray, act: np.ndarray) -> Any:
    """The imitation loss of ``algorithm``'s policy toward env-space actions ``act`` at ``obs``."""
    from guidedrl.guidance import imitation_loss

    return imitation_loss(algorithm.policy, obs, act)


def _advised_mask(batch: Any) -> np.ndarray | None:
    policy = batch.get("policy", None) if hasattr(batch, "get") else None
    if policy is None:
        return None
    advised = policy.get("advised", None) if hasattr(policy, "get") else getattr(policy, "advised", None)
    if advised is None:
        return None
    advised = np.asarray(advised, dtype=bool).reshape(-1)
    return advised if len(advised) == len(batch) else None

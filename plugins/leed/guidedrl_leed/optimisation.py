"""PO — policy optimisation: each agent's PPO loss plus its own similarity-weighted expert loss.

Decentralised training is the learner's part (``marl.share_parameters = false`` and
``marl.centralized_critic = false``: IPPO, one actor and one critic per agent; LEED's presets set
them). LEED adds, for every agent ``a`` in every minibatch, the expert policy loss on ``a``'s own
demonstrations (the public :func:`guidedrl.guidance.imitation_loss`, cross-entropy to the expert's
actions), weighted by

    w_a = c(t) · f(s_a)

- ``c(t)`` falls linearly from ``coef_start`` (10) to ``coef_end`` (0.1) over ``decay_steps`` online
  env steps — LLM4Teach's 10 → 0.1 schedule, stretched to our run lengths;
- ``s_a`` in [0, 1] is the dynamic-time-warping similarity of the agent's recent finished
  trajectories (its observation sequences) to the expert's: for each of its last ``recent``
  trajectories the most similar of its expert trajectories, ``exp(−d / dtw_scale)`` with ``d`` the
  DTW distance (``dtaidistance``'s C implementation) divided by ``sqrt(len₁ + len₂)``, averaged;
- ``f`` (``weighting``): ``dissimilarity`` (default) ``max(min_factor, 1 − s)`` — an agent that
  behaves unlike the expert is pulled toward it, one that already matches it is left to PPO (and is
  pulled back if it drifts); ``similarity`` ``max(min_factor, s)``; ``constant`` 1.

Similarities are computed once per training iteration, from the ``identify_critical_states`` hook
(the finished episodes, between collection and update), not per gradient step. The weight and the
similarity are logged per agent (``methods/leed/<agent>/weight``, ``.../similarity``) and the last
weights are in the summary (``method_counters.leed.weight_<agent>``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from dtaidistance import dtw_ndim

from guidedrl.guidance import imitation_loss
from guidedrl.types import Episode, PolicyUpdate

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl_leed.config import LeedConfig
    from guidedrl_leed.state import LeedState


def coefficient(env_steps: int, cfg: LeedConfig) -> float:
    """c(t): linear from ``coef_start`` to ``coef_end`` over ``decay_steps`` env steps, then flat."""
    frac = min(1.0, max(0.0, env_steps / cfg.decay_steps))
    return cfg.coef_start + (cfg.coef_end - cfg.coef_start) * frac


def factor(similarity: float, cfg: LeedConfig) -> float:
    """f(s) of the configured ``weighting``."""
    if cfg.weighting == "constant":
        return 1.0
    s = min(1.0, max(0.0, similarity))
    return max(cfg.min_factor, 1.0 - s if cfg.weighting == "dissimilarity" else s)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """DTW distance of two observation sequences (T, D), divided by ``sqrt(len(a) + len(b))``."""
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(len(a), -1))
    b = np.ascontiguousarray(np.asarray(b, dtype=np.float64).reshape(len(b), -1))
    if not len(a) or not len(b):
        return math.inf
    return float(dtw_ndim.distance_fast(a, b, use_pruning=True)) / math.sqrt(len(a) + len(b))


def similarity(own: list[np.ndarray], expert: list[np.ndarray], scale: float) -> float | None:
    """Mean over ``own`` trajectories of the best ``exp(−d / scale)`` over ``expert`` ones; ``None``
    when either side is empty."""
    if not own or not expert:
        return None
    return float(np.mean([max(math.exp(-dtw_distance(o, e) / scale) for e in expert) for o in own]))


def expert_trajectories(ctx: RunContext, cfg: LeedConfig, *, name: str) -> dict[str, list[np.ndarray]]:
    """Each agent's expert observation sequences (one per demonstration episode), at most ``max_expert``."""
    out: dict[str, list[np.ndarray]] = {}
    for d in ctx.demos:
        if d.source == name and d.agent is not None and len(d):
            seqs = out.setdefault(d.agent, [])
            if len(seqs) < cfg.max_expert:
                seqs.append(np.asarray(d.obs, dtype=np.float32).reshape(len(d), -1))
    return out


def observe(ctx: RunContext, cfg: LeedConfig, st: LeedState, episodes: list[Episode], *, name: str) -> None:
    """Keep each agent's newest trajectories and recompute its similarity and weight."""
    touched = set()
    for ep in episodes:
        if ep.agent is None or not len(ep):
            continue
        st.push_trajectory(ep.agent, ep.obs, ep.ret, cfg.recent)
        touched.add(ep.agent)
    if not touched:
        return
    expert = expert_trajectories(ctx, cfg, name=name)
    c = coefficient(ctx.env_steps, cfg)
    for agent in sorted(touched):
        s = similarity(list(st.recent[agent]), expert.get(agent, []), cfg.dtw_scale)
        if s is not None:
            st.similarity[agent] = s
        w = c * factor(st.similarity.get(agent, cfg.initial_similarity), cfg)
        st.weight[agent] = w
        ctx.counters[f"{name}/weight_{agent}"] = round(w, 4)
    if st.weight:
        ctx.counters[f"{name}/weight_mean"] = round(float(np.mean(list(st.weight.values()))), 4)


class DemoSampler:
    """Per-agent demonstration tensors on the policy's device, sampled with LEED's own generator
    (saved in the checkpoint, so a resumed run draws the same minibatches)."""

    def __init__(self, ctx: RunContext, *, name: str, version: int) -> None:
        self.version = version
        obs: dict[str, list[np.ndarray]] = {}
        act: dict[str, list[np.ndarray]] = {}
        for d in ctx.demos:
            if d.source != name or d.agent is None or not len(d):
                continue
            obs.setdefault(d.agent, []).append(np.asarray(d.obs, dtype=np.float32).reshape(len(d), -1))
            act.setdefault(d.agent, []).append(np.asarray(d.act, dtype=np.int64).reshape(-1))
        self.obs = {a: torch.as_tensor(np.concatenate(v), device=ctx.device) for a, v in obs.items()}
        self.act = {a: torch.as_tensor(np.concatenate(v), device=ctx.device) for a, v in act.items()}

    def __contains__(self, agent: str) -> bool:
        return agent in self.act

    def sample(self, agent: str, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        size = len(self.act[agent])
        idx = torch.randint(0, size, (min(n, size),), generator=gen).to(self.act[agent].device)
        return self.obs[agent][idx], self.act[agent][idx]


def expert_loss(ctx: RunContext, cfg: LeedConfig, st: LeedState, algorithm: Any, agent: str | None, *, name: str) -> PolicyUpdate | None:
    """``w_a · imitation_loss`` on agent ``a``'s demonstrations (``None`` where it does not apply)."""
    if agent is None:
        return None
    if st.sampler is None or st.sampler.version != st.demo_version:
        st.sampler = DemoSampler(ctx, name=name, version=st.demo_version)
    if agent not in st.sampler:
        return None
    s = st.similarity.get(agent, cfg.initial_similarity)
    w = coefficient(ctx.env_steps, cfg) * factor(s, cfg)
    stats = {"weight": w, "similarity": s}
    if w <= 0:
        return PolicyUpdate(stats=stats)
    obs, act = st.sampler.sample(agent, cfg.batch_size, st.gen)
    loss = imitation_loss(algorithm.policy, obs, act, agent=agent)
    return PolicyUpdate(losses={"expert_loss": w * loss}, stats=stats)

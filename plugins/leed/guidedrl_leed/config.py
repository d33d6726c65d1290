"""LEED's settings (``[leed]`` in a run config, ``--set leed.refine_every=5`` on the command line)."""

from __future__ import annotations

from typing import Literal

import attrs

_pos = attrs.validators.gt(0)
_nonneg = attrs.validators.ge(0)
_prob = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


@attrs.frozen(kw_only=True)
class LeedConfig:
    """LEED: LLM-written instruction sequences executed into per-agent demonstrations (DG), and a
    decentralised PPO whose agents each add a similarity-weighted expert loss (PO).

    The choices the paper leaves open are explained in ``plugins/leed/README.md``.
    """

    # -- demonstration generation (DG) ----------------------------------------------------------
    episodes: int = attrs.field(default=32, validator=_pos)
    """DG: demonstration episodes; the LLM writes one whole plan (every agent's route) per episode.
    Each agent's own actor learns from its own demonstrations only, so it needs many situations
    (start, goal, traffic): with 4 episodes the agents fit them and do not generalise (traffic 4x4,
    N = 4, 8,192 steps, one seed: 1 % of the expert with 4 episodes, 73 % with 32)."""
    seed_offset: int = attrs.field(default=70_000, validator=_nonneg)
    """DG: demonstration episode ``k`` is reset with ``seed_offset + 1000·seed + k`` (apart from the
    training and test seeds); every refinement re-plans the same episodes, so rounds compare."""
    keep: Literal["arrived", "all"] = attrs.field(default="arrived", validator=attrs.validators.in_(("arrived", "all")))
    """DG: ``arrived`` keeps only the transitions of agents that reached their goal (a stuck agent's
    waiting is not expert behaviour); ``all`` keeps every agent's transitions."""
    refine_every: int = attrs.field(default=3, validator=_nonneg)
    """Prompt refinement: training iterations (collections that finished an episode) between
    refinements; 0 never refines."""
    max_refinements: int = attrs.field(default=2, validator=_nonneg)
    """Prompt refinement: at most this many rounds per run (each round asks ``episodes`` plans)."""
    keep_best: bool = True
    """Prompt refinement: per demonstration episode, the refreshed set keeps the better of the
    previous and the new plan (validity first, then team return); ``false`` always takes the new one."""
    feedback_items: int = attrs.field(default=8, validator=_nonneg)
    """Prompt refinement: at most this many rejected instructions (with reasons) in the feedback."""
    feedback_agents: int = attrs.field(default=6, validator=_nonneg)
    """Prompt refinement: at most this many agents' own recent trajectories shown beside the expert's."""
    pretrain_steps: int = attrs.field(default=0, validator=_nonneg)
    """Offline imitation steps requested before RL (``meta["pretrain_steps"]``); the paper has none."""

    # -- policy optimisation (PO) ---------------------------------------------------------------
    coef_start: float = attrs.field(default=10.0, validator=_nonneg)
    """PO: the expert-loss coefficient c at the start (LLM4Teach's 10)."""
    coef_end: float = attrs.field(default=0.1, validator=_nonneg)
    """PO: the floor of c (LLM4Teach's 0.1)."""
    decay_steps: float = attrs.field(default=20_000.0, validator=_pos)
    """PO: online env steps over which c falls linearly from ``coef_start`` to ``coef_end``
    (LLM4Teach: 0.005 per iteration over ~2000 iterations; our runs have tens of iterations)."""
    weighting: Literal["dissimilarity", "similarity", "constant"] = attrs.field(
        default="dissimilarity", validator=attrs.validators.in_(("dissimilarity", "similarity", "constant"))
    )
    """PO: agent weight = c · f(s), s in [0, 1] the DTW similarity of the agent's recent trajectories
    to the expert's: ``dissimilarity`` f = max(min_factor, 1 − s) (an agent far from the expert
    imitates more, one that matches it is left to PPO); ``similarity`` f = max(min_factor, s);
    ``constant`` f = 1 (LLM4Teach)."""
    min_factor: float = attrs.field(default=0.1, validator=_prob)
    """PO: the least f(s), so an agent never drops the expert loss entirely."""
    initial_similarity: float = attrs.field(default=0.0, validator=_prob)
    """PO: s before an agent has a finished trajectory to compare."""
    dtw_scale: float = attrs.field(default=1.0, validator=_pos)
    """PO: s = exp(−d / dtw_scale), d the DTW distance of two observation sequences divided by
    sqrt(their summed length) (a per-step RMS distance)."""
    recent: int = attrs.field(default=4, validator=_pos)
    """PO: an agent's most recent finished trajectories compared with the expert's."""
    max_expert: int = attrs.field(default=8, validator=_pos)
    """PO: at most this many expert trajectories per agent compared (each recent trajectory takes
    the most similar one)."""
    batch_size: int = attrs.field(default=256, validator=_pos)
    """PO: demonstration transitions per agent per optimiser step."""

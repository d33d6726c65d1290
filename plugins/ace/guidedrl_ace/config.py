"""ACE's settings (``[ace]`` in a run config, ``--set ace.beta=0.3`` on the command line)."""

from __future__ import annotations

from typing import Literal

import attrs

_pos = attrs.validators.gt(0)
_nonneg = attrs.validators.ge(0)
_prob = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


@attrs.frozen(kw_only=True)
class AceConfig:
    """ACE: an LLM actor refines low-reward transitions and an LLM critic reassigns rewards at key
    steps, both feeding a discrete SAC through a mixed replay. The choices the paper leaves open are
    explained in ``plugins/ace/README.md``. Defaults suit Grid2Op's L2RPN reward (in [0, 1] per step).
    """

    # -- LLM as policy actor (actor.py) -----------------------------------------------------------
    reward_threshold: float = 0.5
    """r̄: transitions of finished episodes whose env reward is below this are refined by the LLM."""
    rounds: int = attrs.field(default=3, validator=_pos)
    """R: multi-round reasoning, proposals per transition (each checked by ``adapter.simulate``)."""
    per_episode: int = attrs.field(default=2, validator=_nonneg)
    """Low-reward transitions refined per finished episode (lowest reward first)."""
    min_gain: float = attrs.field(default=0.0, validator=_nonneg)
    """A proposal is accepted when its simulated reward beats the executed action's by more than this."""
    actor_calls: int = attrs.field(default=500, validator=_nonneg)
    """Most LLM calls the actor makes in a run (the paper: 508 calls in a 40k-step NeurIPS 2020 run)."""

    # -- LLM as value critic (critic.py) ----------------------------------------------------------
    critic_start: int = attrs.field(default=0, validator=_nonneg)
    """Env step from which the critic reads finished trajectories (the paper starts it later)."""
    key_threshold: float = attrs.field(default=0.5, validator=_nonneg)
    """A step is a key step when ``|r - baseline|`` is above this."""
    key_baseline: Literal["zero", "median"] = attrs.field(
        default="median", validator=attrs.validators.in_(("zero", "median"))
    )
    """``zero``: key steps have ``|r|`` above the threshold (the paper's words); ``median``: ``|r -
    median(r)|`` of the episode (for rewards that are positive every step, like L2RPN's)."""
    max_keys: int = attrs.field(default=4, validator=_pos)
    """Key steps per trajectory (largest deviation first)."""
    window: int = attrs.field(default=16, validator=_nonneg)
    """The critic reads the trajectory from this many steps before the first key step to the last one
    (keeps prompts of 288-step episodes short); 0 shows the whole episode."""
    k: float = attrs.field(default=0.25, validator=_pos)
    """K: reassigned rewards are one of {-2K, -K, +K, +2K}, added to the env reward at the key step."""
    critic_calls: int = attrs.field(default=200, validator=_nonneg)
    """Most trajectories the critic reads in a run."""

    # -- mixed replay (replay.py) -----------------------------------------------------------------
    beta: float = attrs.field(default=0.25, validator=_prob)
    """β: share of each sampled batch drawn from D_LLM (the LLM-checked transitions)."""
    llm_buffer_size: int = attrs.field(default=5000, validator=_pos)
    """Transitions D_LLM holds (oldest overwritten first)."""
    alpha: float = attrs.field(default=0.6, validator=_nonneg)
    """Priority exponent within each source (0: uniform sampling)."""
    weight_scale: float = attrs.field(default=4.0, validator=_nonneg)
    """Importance weight of an LLM transition: ``clip(1 + weight_scale * (r_llm - r_executed), 1,
    max_weight)``; it scales its sampling priority and its loss weight."""
    max_weight: float = attrs.field(default=3.0, validator=attrs.validators.ge(1.0))
    """Upper clip of the importance weight."""
    imitation_coef: float = attrs.field(default=1.0, validator=_nonneg)
    """Weight of the importance-weighted imitation loss toward LLM actions in SAC's actor update."""

    # -- fine-tuning data (finetune.py) ------------------------------------------------------------
    export: bool = True
    """Append accepted actor and critic exchanges to ``<run>/ace_finetune.jsonl`` (chat format)."""

"""ULTRA's settings (``[ultra]`` in a run config, ``--set ultra.variant=ra`` on the command line)."""

from __future__ import annotations

from typing import Literal

import attrs

_pos = attrs.validators.gt(0)
_nonneg = attrs.validators.ge(0)
_prob = [attrs.validators.ge(0.0), attrs.validators.le(1.0)]


@attrs.frozen(kw_only=True)
class UltraConfig:
    """ULTRA: critical states of a sub-optimal policy's trajectories, then LLM guidance there.

    The choices the paper leaves open (matching rule, implicit reward formula, imitation weight) are
    explained in ``plugins/ultra/README.md``.
    """

    variant: Literal["a", "r", "ra"] = attrs.field(default="ra", validator=attrs.validators.in_(("a", "r", "ra")))
    """``a``: take the LLM's action at critical states; ``r``: add the LLM's implicit reward there;
    ``ra``: both (the paper's best)."""

    # -- identification -------------------------------------------------------------------------
    episodes: int = attrs.field(default=8, validator=_pos)
    """Training episodes (of the sub-optimal policy the run starts from) analysed first."""
    refresh_every: int = attrs.field(default=0, validator=_nonneg)
    """Env steps between later analyses of fresh episodes; 0 analyses only the first ``episodes``."""
    refresh_episodes: int = attrs.field(default=2, validator=_pos)
    """Episodes analysed at each refresh."""
    max_states: int = attrs.field(default=10, validator=_pos)
    """Critical states the LLM may name per episode."""
    chunk_len: int = attrs.field(default=50, validator=_pos)
    """Longer episodes are shown to the LLM in chunks of this many steps..."""
    overlap: int = attrs.field(default=10, validator=_nonneg)
    """...overlapping by this many steps (must be below ``chunk_len``)."""
    min_score: float = attrs.field(default=0.0, validator=_prob)
    """Critical states the LLM scores below this are ignored."""

    # -- matching: is a state met in a new rollout a known critical state? ----------------------
    match: Literal["auto", "nearest", "exact"] = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "nearest", "exact"))
    )
    """``nearest``: nearest critical state within ``tolerance`` in standardised feature space (a
    KD-tree); ``exact``: features rounded to ``decimals`` must be equal; ``auto``: ``exact`` for
    integer features (discrete observations), else ``nearest``."""
    features: Literal["auto", "obs", "adapter"] = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "obs", "adapter"))
    )
    """What is compared: ``obs`` (the flattened observation), ``adapter`` (the env adapter's
    ``match_features(obs_batch)``, e.g. Pong's ball and paddle positions) or ``auto`` (the adapter's
    when it has them)."""
    tolerance: float = attrs.field(default=0.25, validator=_pos)
    """``nearest``: largest root-mean-square distance, in standard deviations per feature (running
    statistics of all observations seen), at which a state still counts as the critical state."""
    decimals: int = attrs.field(default=2, validator=_nonneg)
    """``exact``: features are rounded to this many decimals before comparing."""
    max_table: int = attrs.field(default=20000, validator=_pos)
    """Critical states kept; beyond this the lowest-scored are dropped."""

    # -- improvement ----------------------------------------------------------------------------
    advice_prob: float = attrs.field(default=1.0, validator=_prob)
    """Probability of taking the LLM's action at a matched critical state (A)."""
    reward_scale: float = attrs.field(default=0.1, validator=_nonneg)
    """Implicit reward added at a matched critical state = ``reward_scale`` x the LLM's rating in
    [-1, 1] of the action executed there (R)."""
    rate_executed: bool = True
    """Ask the LLM to rate an executed action it has not rated yet at a matched critical state (R);
    otherwise only the analysed trajectory's action (and, for ``ra``, the LLM's own) are rated."""
    max_ratings_per_state: int = attrs.field(default=8, validator=_pos)
    """At most this many distinct actions are rated per critical state."""
    action_tolerance: float = attrs.field(default=0.1, validator=_nonneg)
    """Continuous actions: an executed action shares a rating with a rated one within this RMS
    distance (in units of the half action range)."""

    # -- update ---------------------------------------------------------------------------------
    imitation_weight: float = attrs.field(default=1.0, validator=_nonneg)
    """Weight of the imitation loss toward ULTRA's advised actions (PPO: negative log-likelihood;
    SAC: MSE of the mean action; DQN: cross-entropy on Q-values)."""
    imitation_continuous: Literal["mse", "nll"] = attrs.field(default="mse", validator=attrs.validators.in_(("mse", "nll")))
    """PPO with continuous actions: ``mse`` (squared error of the mean action; keeps PPO's exploration
    noise) or ``nll`` (negative log-likelihood; also shrinks the learnt standard deviation)."""
    imitation_batch: int = attrs.field(default=256, validator=_pos)
    """Advised transitions sampled for the imitation loss at each optimiser step."""
    imitate_table: bool = True
    """Also imitate the LLM's actions at the stored critical states themselves, not only where a
    rollout met them again: the lookup table doubles as a small supervised data set, which lets the
    policy generalise the advice to states that never match exactly (see the README)."""

    def __attrs_post_init__(self) -> None:
        if self.overlap >= self.chunk_len:
            raise ValueError(f"ultra.overlap ({self.overlap}) must be below ultra.chunk_len ({self.chunk_len})")

    @property
    def advises(self) -> bool:
        """Whether this variant takes LLM actions (A)."""
        return "a" in self.variant

    @property
    def rewards(self) -> bool:
        """Whether this variant adds implicit rewards (R)."""
        return "r" in self.variant

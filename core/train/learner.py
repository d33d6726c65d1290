"""The learner interface the one epoch loop (:mod:`guidedrl.train.loop`) drives.

Every run is the same loop: collect → ``identify_critical_states`` → ``shape_reward`` → update →
evaluate → checkpoint. What differs between a single-agent run over a Tianshou algorithm and a
multi-agent run over a PettingZoo parallel env is the learner behind the loop:
:class:`guidedrl.train.single.TianshouLearner` and the multi-agent learner
(:mod:`guidedrl.train.marl`). Both implement :class:`Learner`; the loop never looks inside.

Counting: ``env_steps`` is what the run's budget (``steps``) counts — env transitions in single-agent
runs, *joint* env steps (one step of every agent of one env) in multi-agent runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

if TYPE_CHECKING:
    from guidedrl.types import Demonstrations, Episode


@attrs.frozen(kw_only=True)
class Collected:
    """What one collection brought in."""

    env_steps: int
    """Env steps done (joint steps in multi-agent runs)."""
    returns: list[float] = attrs.field(factory=list)
    """Returns of the training episodes that finished (team returns in multi-agent runs)."""
    metrics: list[dict[str, float]] = attrs.field(factory=list)
    """Per finished episode, the numbers the env reports under ``info[...]["metrics"]``."""


@attrs.frozen(kw_only=True)
class Evaluation:
    """Test episodes of the current policy (deterministic unless the config says otherwise)."""

    returns: np.ndarray
    """One return per test episode (team return in multi-agent runs)."""
    metrics: dict[str, float] = attrs.field(factory=dict)
    """Means over the test episodes of what the env reports under ``info[...]["metrics"]``."""


class Learner(Protocol):
    """What the epoch loop needs from the thing that learns."""

    algorithm: Any
    """What ``ctx.algorithm`` shows hooks: a Tianshou ``Algorithm``, or the multi-agent algorithm
    (``.policy`` the actors, ``.critic``); both have ``.policy``."""
    on_policy: bool
    """On-policy learners clear their data after each update and save no replay buffer."""
    return_kind: str
    """What ``test/return`` means (``"episode"``; ``"team (...)"`` in multi-agent runs)."""

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers and the learner's counters, as ``torch.load(weights_only=True)``
        reads them. Saved under ``"learner"`` in every checkpoint."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def load_networks(self, state: dict[str, Any], source: str) -> None:
        """Only the networks of another run's ``state_dict()`` (``train.init_from``); a mismatch is a
        :class:`~guidedrl.errors.ConfigError` naming ``source``."""
        ...

    def replay_buffer(self) -> Any:
        """The Tianshou replay buffer saved with each checkpoint (off-policy), or ``None``."""
        ...

    # -- training -----------------------------------------------------------------------------
    def start(self) -> None:
        """Make the training envs and collector (evaluation-only uses skip this)."""
        ...

    def pretrain(self, demos: list[Demonstrations], steps: int, progress: bool) -> dict[str, float]:
        """Offline imitation of ``demos`` for ``steps`` gradient steps; returns ``pretrain/*`` stats."""
        ...

    def warmup(self) -> int:
        """Random-action steps before learning starts (off-policy ``start_steps``); returns env steps."""
        ...

    def collect(self, env_steps: int) -> Collected:
        """One collection with the training policy (``refine_action`` applied); ``env_steps`` is the
        run's count before it (for schedules)."""
        ...

    def pop_finished(self) -> list[Episode]:
        """Finished training episodes since the last call (only assembled when some plugin implements
        ``identify_critical_states``), oldest first; multi-agent: one per agent, ``Episode.agent`` set."""
        ...

    def cut_episodes(self) -> list[Episode]:
        """The training episodes in progress as trajectory chunks ending here (``terminated=False``),
        before the loop restarts them at an epoch boundary (assembled only when some plugin implements
        ``identify_critical_states``)."""
        ...

    def shape_rewards(self) -> dict[str, float]:
        """``shape_reward`` on the transitions collected since the last call (each transition meets it
        once); returns stats."""
        ...

    def update(self, env_steps: int) -> dict[str, float]:
        """The updates due after one collection; returns ``losses/*`` and ``methods/*`` stats."""
        ...

    def restart_episodes(self, seeds: list[int]) -> None:
        """End the training episodes in progress and reset every training env with ``seeds``."""
        ...

    def n_train_envs(self) -> int: ...

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, episodes: int, seed: int) -> Evaluation: ...

    def close(self) -> None: ...


__all__ = ["Collected", "Evaluation", "Learner"]

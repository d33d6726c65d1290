"""The guidedrl hook specifications: where guidance can enter a training run.

Only markers and specs live here (the manager is in :mod:`guidedrl.plugins`). The core calls every
hook with keyword arguments only (pluggy's rule; the specs use plain parameters because pluggy
reads argument names from positional parameters); an implementation may accept any subset of them. How the results of several
plugins combine is fixed by the core and stated in each docstring (and in ``docs/hooks.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # annotations only: `import guidedrl` stays free of numpy, torch and Tianshou
    import numpy as np
    from tianshou.data import Batch

    from guidedrl.context import RunContext
    from guidedrl.types import ActionAdvice, CriticalState, Demonstrations, Episode, PolicyUpdate

PROJECT = "guidedrl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The five guidance hooks, in the order a run first meets them.
GUIDANCE_HOOKS = (
    "generate_demonstrations",
    "identify_critical_states",
    "refine_action",
    "shape_reward",
    "update_policy",
)


@hookspec
def generate_demonstrations(ctx: RunContext) -> Demonstrations | list[Demonstrations] | None:
    """Produce expert trajectories before training starts.

    Results of all plugins are concatenated into ``ctx.demos``, each tagged with the plugin that made
    it. When the run's ``pretrain.steps`` is above zero (or a demonstration set asks for steps in
    ``meta["pretrain_steps"]``) the core clones them into the policy first (offline imitation) and
    then trains as usual; methods can also read ``ctx.demos`` in
    ``update_policy`` to keep an expert loss.

    :param ctx: The run: config, env adapter, LLM client, policy, shared state.
    :return: One or several :class:`~guidedrl.types.Demonstrations`, or ``None`` for nothing.
    """


@hookspec
def identify_critical_states(
    ctx: RunContext, episodes: list[Episode]
) -> list[CriticalState] | None:
    """Mark the critical states of finished training episodes.

    Called after each collection step that finished episodes. The union of all plugins' states is
    stored in ``ctx.critical_states`` (the same ``(episode, t)`` from two plugins keeps the max score)
    so that ``refine_action`` and ``shape_reward`` of any plugin can read it.

    :param ctx: The run.
    :param episodes: The episodes that just finished, oldest first.
    :return: Critical states (``episode`` indexes ``episodes``), or ``None``.
    """


@hookspec(firstresult=True)
def refine_action(
    ctx: RunContext,
    obs: np.ndarray,
    act: np.ndarray,
    info: Any,
    env_ids: np.ndarray,
    agent: str | None,
) -> ActionAdvice | None:
    """Replace some of the policy's actions while collecting training data.

    Called once per vectorised step, only by the training collector (never during evaluation).
    Stops at first non-None result, in the order the run names its methods. The advised mask is
    stored under ``batch.policy.advised`` and the advising method under ``batch.policy.advised_by``
    (read it with ``guidedrl.guidance.advised_by``); on-policy updates keep advised steps out of the
    importance ratio (see ``docs/hooks.md``).

    :param ctx: The run.
    :param obs: Observations of the ready envs, shape ``(n, *obs_shape)``.
    :param act: The policy's actions for them (already mapped to the env's action space).
    :param info: The envs' last ``info`` (a Tianshou ``Batch`` or array of dicts).
    :param env_ids: Which vectorised envs these rows belong to.
    :param agent: For multi-agent runs the agent acting; ``None`` otherwise.
    :return: :class:`~guidedrl.types.ActionAdvice` with replacement actions and a mask, or ``None``.
    """


@hookspec
def shape_reward(ctx: RunContext, batch: Batch, agent: str | None) -> np.ndarray | None:
    """Add a bonus to the rewards of newly collected transitions.

    Called once per transition, right after it is collected (single-agent runs: one call per
    collection, on all its new transitions; multi-agent runs: per agent, on the rollout before its
    update), never inside a gradient step. The bonuses of all plugins are summed and stored by the core
    with each transition (``batch.policy.bonus``; the stored ``rew`` becomes env reward + bonus), so
    every later target (GAE, n-step returns) uses it. Never edit ``batch.rew`` in place; to change a
    stored bonus later use ``guidedrl.guidance.set_bonus``.

    :param ctx: The run.
    :param batch: The new transitions (``obs``, ``act``, ``rew`` (the env's), ``obs_next``, ``policy``).
    :param agent: For multi-agent runs the agent being updated; ``None`` otherwise.
    :return: Per-transition additive bonus, shape ``(len(batch),)``, or ``None``.
    """


@hookspec
def update_policy(
    ctx: RunContext, batch: Batch, algorithm: Any, agent: str | None
) -> PolicyUpdate | None:
    """Add loss terms (and stats) to a policy update.

    Called at every optimiser step of the policy (PPO: each minibatch; DQN: each step; SAC: each
    actor step). Loss terms of all plugins are summed into the algorithm's loss; stats are logged
    under ``methods/<plugin>/``.

    :param ctx: The run.
    :param batch: The update's batch (PPO: the whole on-policy batch; DQN/SAC: the sampled batch).
    :param algorithm: The Tianshou algorithm being updated (its ``policy`` holds the networks).
    :param agent: For multi-agent runs the agent being updated; ``None`` otherwise.
    :return: :class:`~guidedrl.types.PolicyUpdate`, or ``None``.
    """


# Registration hooks: environment adapters and LLM backends. These are called once per process on
# the registry plugins found through the ``guidedrl.envs`` and ``guidedrl.llms`` entry points.


@hookspec
def register_envs(register: Callable[..., None]) -> None:
    """Register environment adapters: ``register("prefix:name-v0", factory)``.

    ``factory(**kwargs)`` returns a :class:`guidedrl.envs.EnvAdapter`.
    """


@hookspec
def register_llms(register: Callable[..., None]) -> None:
    """Register LLM backends: ``register("name", factory)``.

    ``factory(*, adapter, **options)`` returns a LangChain ``BaseChatModel``.
    """

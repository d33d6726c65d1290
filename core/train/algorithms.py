"""Tianshou algorithms built from config by name (:data:`ALGORITHMS`: PPO, DQN, SAC — discrete
actions get Tianshou's DiscreteSAC), and the one place guidance enters updates.

:class:`GuidedAlgorithmMixin` is mixed into Tianshou's own ``PPO``, ``DQN`` and ``SAC``:

- ``shape_reward`` does not happen here: the training collector stores each transition's bonus with
  it once, right after collection (``rew`` = env reward + ``policy.bonus``,
  :mod:`guidedrl.guidance`), so GAE and Tianshou's n-step returns (which read ``buffer.rew``) use
  every step's bonus, whichever neighbours a minibatch samples.
- ``update_policy``: the policy's optimiser (PPO: actor-critic; DQN: Q-net; SAC: actor) is wrapped
  so every ``step(loss)`` adds the plugins' loss terms computed on the update's batch.
- advised steps (``batch.policy.advised``): PPO recomputes ``logp_old`` from stored actions, which
  is wrong for actions the policy did not sample, so advised steps get advantage 0 (out of the
  clipped surrogate; advantages are normalised over the policy's own steps first). The method that
  advised is expected to train toward its advice through ``update_policy``. Off-policy algorithms
  learn from advised transitions as from any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import DQN, PPO, SAC, DiscreteSAC
from tianshou.algorithm.algorithm_base import Algorithm, OnPolicyAlgorithm, _nstep_return
from tianshou.algorithm.modelfree.discrete_sac import DiscreteSACPolicy
from tianshou.algorithm.modelfree.dqn import DiscreteQLearningPolicy
from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy, ProbabilisticActorPolicy, SimpleLossTrainingStats
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, ReplayBuffer, VectorReplayBuffer, to_numpy, to_torch_as
from tianshou.utils.lagged_network import EvalModeModuleWrapper
from tianshou.utils.net.common import MLP, Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic
from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic
from tianshou.utils.torch_utils import torch_train_mode

from guidedrl.errors import ConfigError, PluginError, did_you_mean
from guidedrl.train import hooks

if TYPE_CHECKING:
    from guidedrl.config import RunConfig
    from guidedrl.context import RunContext


class _Optimizer(Algorithm.Optimizer):
    """Tianshou's optimiser wrapper, with the parameters to clip listed once: Tianshou's ``step`` walks
    the module tree for them on every gradient step. Same parameters in the same order, so the same
    clipping; the module's parameters do not change after construction (the torch optimiser holds
    them too)."""

    def __init__(self, optim: torch.optim.Optimizer, module: torch.nn.Module, max_grad_norm: float | None = None) -> None:
        super().__init__(optim, module, max_grad_norm=max_grad_norm)
        self._params = list(module.parameters())

    def step(self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        self._optim.zero_grad()
        loss.backward(retain_graph=retain_graph, create_graph=create_graph)
        if self._max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._params, max_norm=self._max_grad_norm)
        self._optim.step()


class _GuidedOptimizer:
    """Wraps ``Algorithm.Optimizer`` so each step adds the ``update_policy`` loss terms."""

    def __init__(self, inner: Algorithm.Optimizer, algorithm: GuidedAlgorithmMixin) -> None:
        self._inner = inner
        self._algorithm = algorithm

    def step(self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        algo = self._algorithm
        batch = algo._guided_batch
        if batch is not None:
            extra, stats = hooks.update_policy(algo._guided_ctx, batch, algo)
            if extra is not None:
                loss = loss + extra
            for key, value in stats.items():
                algo._guided_stats.setdefault(key, []).append(value)
        self._inner.step(loss, retain_graph=retain_graph, create_graph=create_graph)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class GuidedAlgorithmMixin:
    """Puts ``shape_reward`` and ``update_policy`` into a Tianshou algorithm's update."""

    _guided_ctx: RunContext
    _guided_hooks: hooks.HookSet
    _guided_batch: Any = None
    Optimizer = _Optimizer  # what Tianshou's ``_create_optimizer`` wraps each torch optimiser in
    lean_update = True
    """Updates skip what changes nothing learnt (the ``train()`` switch that would set no flag: see
    :meth:`train`; DQN: see :class:`GuidedDQN`); ``False``: Tianshou's update exactly."""
    _modules_once: list[torch.nn.Module] | None = None
    _train_skippable = False
    _train_flags: list[bool] | None = None

    def attach_guidance(self, ctx: RunContext, hook_set: hooks.HookSet, optimizer_attr: str) -> None:
        self._guided_ctx = ctx
        self._guided_hooks = hook_set
        self._guided_stats: dict[str, list[float]] = {}
        if hook_set.update_policy:
            setattr(self, optimizer_attr, _GuidedOptimizer(getattr(self, optimizer_attr), self))
        if isinstance(self, PPO) and hook_set.refine_action:
            # Advised steps are zeroed after a whole-batch normalisation (see module docstring).
            self._guided_normalise = self.advantage_normalization
            self.advantage_normalization = False

    def pop_guidance_stats(self) -> dict[str, float]:
        stats = {k: float(np.mean(v)) for k, v in self._guided_stats.items() if v}
        self._guided_stats = {}
        return stats

    def _preprocess_batch(self, batch: Any, buffer: Any, indices: np.ndarray) -> Any:
        # Rewards arrive shaped: the collector stored each transition's bonus with it (rew = env
        # reward + bonus) once, right after collection, so GAE and n-step targets need nothing here.
        batch = super()._preprocess_batch(batch, buffer, indices)  # type: ignore[misc]
        if "weight" in batch.get_keys():
            # a weighted buffer's loss weights (prioritized, mixed), kept for update_policy: DQN pops
            # ``weight`` and SAC overwrites it with TD errors before the policy's optimiser step
            batch.sample_weight = batch.weight
        if isinstance(self, OnPolicyAlgorithm) and self._guided_hooks.refine_action:
            self._exclude_advised(batch)
        self._guided_batch = batch
        return batch

    def train(self, mode: bool = True) -> Any:
        """``nn.Module.train``, skipped when it would set no flag: when every module already has the
        flag ``train(True)`` gave it last time and no module's ``train`` does more than set flags.
        Tianshou's update switches to train mode and back (``torch_train_mode``) on every update, each
        a walk of the module tree (~7% of SAC's update time); between updates nothing changes a flag."""
        if mode and self.lean_update:
            if self._modules_once is None:
                self._modules_once = list(self.modules())  # type: ignore[attr-defined]  # fixed after construction
                self._train_skippable = all(
                    m is self or type(m).train is torch.nn.Module.train or type(m) is EvalModeModuleWrapper
                    for m in self._modules_once
                )
            if self._train_skippable and [m.training for m in self._modules_once] == self._train_flags:
                return self
        result = super().train(mode)  # type: ignore[misc]
        if mode and self._modules_once is not None:
            self._train_flags = [m.training for m in self._modules_once]
        return result

    def _exclude_advised(self, batch: Any) -> None:
        advised = batch.policy.get("advised", None) if "policy" in batch.get_keys() else None
        adv = batch.adv
        own = torch.ones(len(adv), dtype=torch.bool, device=adv.device)
        if advised is not None:
            own = ~torch.as_tensor(np.asarray(advised, dtype=bool), device=adv.device)
        if getattr(self, "_guided_normalise", False) and own.sum() > 1:
            mean, std = adv[own].mean(), adv[own].std()
            adv = (adv - mean) / (std + 1e-8)
        batch.adv = torch.where(own, adv, torch.zeros_like(adv))

    def _postprocess_batch(self, batch: Any, buffer: Any, indices: np.ndarray) -> None:
        try:
            super()._postprocess_batch(batch, buffer, indices)  # type: ignore[misc]
        finally:
            self._guided_batch = None


class GuidedPPO(GuidedAlgorithmMixin, PPO):
    """Tianshou's PPO with guidance hooks."""

    _UPDATE_KEYS = ("obs", "act", "info", "adv", "returns", "v_s", "logp_old")
    """What PPO's minibatch loop reads (the policy: ``obs``, ``info``; the losses: the rest)."""

    def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> Any:
        # PPO's loop splits the rollout into shuffled minibatches `repeat` times, and each split
        # indexes every column (rew, obs_next, the done flags, policy.*, ...) though it reads only
        # these; the same permutations (np.random) select the same rows. update_policy hooks still
        # get the whole batch (_guided_batch). Recomputed advantages need the whole rollout.
        if not self.recompute_adv:
            keys = batch.get_keys()
            batch = Batch({k: batch[k] for k in self._UPDATE_KEYS if k in keys})
        return super()._update_with_batch(batch, batch_size, repeat)


_PLAIN_MODULES = (
    Net, MLP, EvalModeModuleWrapper, DiscreteQLearningPolicy, torch.nn.Sequential, torch.nn.Linear, torch.nn.Identity,
    torch.nn.Flatten, torch.nn.ReLU, torch.nn.Tanh, torch.nn.ELU, torch.nn.LeakyReLU, torch.nn.SiLU, torch.nn.GELU,
    torch.nn.Sigmoid, torch.nn.Softmax,
)
"""Modules whose forward pass ignores the train flag and keeps no state, and whose ``train`` only sets
flags: skipping a forward pass or a ``train()`` call that changes no flag changes nothing."""


class GuidedDQN(GuidedAlgorithmMixin, DQN):
    """Tianshou's DQN with guidance hooks, and gradient clipping (Tianshou's DQN has none).

    ``update`` takes a lean path (:meth:`_lean_update`) when it gives Tianshou's result bit for bit:
    a uniform ``ReplayBuffer``/``VectorReplayBuffer`` of array observations, no ``update_policy``
    hooks (they read the update's whole batch), Tianshou's Q-learning policy on a plain MLP, and none
    of the update's steps overridden; Tianshou's ``update`` otherwise (prioritized and mixed buffers,
    subclasses, dict observations, ...).
    """

    _LEAN_STEPS = (
        "update", "_update", "_preprocess_batch", "compute_nstep_return", "_target_q", "value_mask",
        "_update_with_batch", "_postprocess_batch", "_periodically_update_lagged_network_weights",
    )
    """The steps of Tianshou's update that :meth:`_lean_update` does itself: a subclass overriding one
    of them gets Tianshou's path, with its override."""

    def __init__(self, *, max_grad_norm: float | None = None, **kwargs: Any) -> None:
        self._dqn_max_grad_norm = max_grad_norm  # read by DQN.__init__ through _create_policy_optimizer
        super().__init__(**kwargs)
        self._plain = all(type(m) is type(self) or isinstance(m, _PLAIN_MODULES) for m in self.modules())
        self._target_modules = list(self.model_old.module.modules()) if self.model_old is not None else []

    def _create_policy_optimizer(self, optim: Any) -> Algorithm.Optimizer:
        return self._create_optimizer(self.policy, optim, max_grad_norm=self._dqn_max_grad_norm)

    def update(self, buffer: ReplayBuffer, sample_size: int | None) -> Any:
        if self._lean_update_applies(buffer):
            return self._lean_update(buffer, sample_size)
        return super().update(buffer, sample_size)

    def _lean_update_applies(self, buffer: Any) -> bool:
        cls = type(self)
        return (
            self.lean_update
            and type(buffer) in (ReplayBuffer, VectorReplayBuffer)
            and buffer.stack_num == 1
            and len(buffer) > 0
            and isinstance(buffer._meta.get("obs", None), np.ndarray)  # no dict observations, no action mask
            and self.policy.is_within_training_step  # else Tianshou's update raises its error
            and not self.lr_schedulers
            and not getattr(getattr(self, "_guided_hooks", None), "update_policy", True)
            and type(self.policy) is DiscreteQLearningPolicy
            and type(self.policy.model) is Net
            and self._plain
            and all(getattr(cls, name) is getattr(GuidedDQN, name) for name in self._LEAN_STEPS)
        )

    def _lean_update(self, buffer: ReplayBuffer, sample_size: int | None) -> SimpleLossTrainingStats:
        """Tianshou's ``update`` (``_update``, ``compute_nstep_return``, ``DQN._target_q`` and
        ``DQN._update_with_batch``) on the buffer's arrays, without what costs Python time per update
        and changes nothing learnt: the sampled rows and the next observations gathered into
        ``Batch``es of every column, the policy's forward pass around the network (argmax, ``Batch``
        of its outputs), the online network's pass over the next observations that the plain (not
        double) target never reads, and the recursive ``train()`` switch when every module already has
        the mode it sets. Same indices (the buffer's own sampling), same tensors, same optimiser step.
        Hand-written because Tianshou's update has no smaller part to override that avoids the Batches."""
        start_time = time.time()
        indices = buffer.sample_indices(sample_size)
        model = self.policy.model
        # compute_nstep_return: the indices n-1 steps on (cut at episode ends), the target there
        stacked = [indices]
        for _ in range(self.n_step - 1):
            stacked.append(buffer.next(stacked[-1]))
        stacked_NI = np.stack(stacked)
        after = stacked_NI[-1]
        with torch.no_grad():
            obs_next = buffer.get(after, "obs_next") if buffer._save_obs_next else buffer.get(buffer.next(after), "obs")
            if self.use_target_network:
                online = model(obs_next)[0] if self.is_double else None
                target = self._target_net()(obs_next)[0]
            else:
                online = target = model(obs_next)[0]
            if self.is_double:
                target_q = target[np.arange(len(after)), to_numpy(online.argmax(dim=1))]
            else:
                target_q = target.max(dim=1)[0]
        target_q_IA = to_numpy(target_q.reshape(len(indices), -1))
        target_q_IA *= (~buffer.terminated[after]).reshape(-1, 1)  # Algorithm.value_mask
        end_flag_B = buffer.done.copy()
        end_flag_B[buffer.unfinished_index()] = True
        returns = to_torch_as(_nstep_return(buffer.rew, end_flag_B, target_q_IA, stacked_NI, self.gamma, self.n_step), target_q)
        with torch_train_mode(self):  # (a no-op when every flag is set already: see GuidedAlgorithmMixin.train)
            # DQN._update_with_batch (weight 1: a uniform buffer's samples carry none)
            self._periodically_update_lagged_network_weights()
            q = model(buffer.get(indices, "obs"))[0]
            q = q[np.arange(len(q)), buffer.act[indices]]
            returns = to_torch_as(returns.flatten(), q)
            loss = self._td_loss(q, returns)
            self.optim.step(loss)
            stats = SimpleLossTrainingStats(loss=loss.item())
        stats.train_time = time.time() - start_time
        return stats

    def _update_with_batch(self, batch: Any) -> SimpleLossTrainingStats:
        """Tianshou's, except that the Huber loss keeps a weighted buffer's per-row weights (prioritised
        replay's importance weights, a mixed buffer's source weights): Tianshou's Huber branch drops
        them, its squared-error branch applies them. Unweighted batches take Tianshou's code."""
        if self.huber_loss_delta is None or "weight" not in batch.get_keys():
            return super()._update_with_batch(batch)
        self._periodically_update_lagged_network_weights()
        weight = batch.pop("weight")
        q = self.policy(batch).logits
        q = q[np.arange(len(q)), batch.act]
        returns = to_torch_as(batch.returns.flatten(), q)
        loss = self._td_loss(q, returns, to_torch_as(weight, q))
        batch.weight = returns - q  # the TD errors a prioritised buffer's priorities are updated from
        self.optim.step(loss)
        return SimpleLossTrainingStats(loss=loss.item())

    def _td_loss(self, q: torch.Tensor, returns: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``DQN._update_with_batch``'s loss, term for term (the lean update's and the weighted Huber
        update's): squared error times the rows' weights, or the Huber loss, per row times the weights
        when there are any (Tianshou's Huber branch has none)."""
        if self.huber_loss_delta is None:
            return ((returns - q).pow(2) * (1.0 if weight is None else weight)).mean()
        if weight is None:
            return torch.nn.functional.huber_loss(
                q.reshape(-1, 1), returns.reshape(-1, 1), delta=self.huber_loss_delta, reduction="mean"
            )
        return (torch.nn.functional.huber_loss(q, returns, delta=self.huber_loss_delta, reduction="none") * weight).mean()

    def _target_net(self) -> torch.nn.Module:
        """The target network: the wrapped network itself when all its modules are in eval mode (the
        wrapper's forward calls its ``eval()``, a walk of the module tree, which changes nothing then)."""
        if any(m.training for m in self._target_modules):
            return self.model_old  # type: ignore[return-value]
        return self.model_old.module  # type: ignore[union-attr]


class GuidedSAC(GuidedAlgorithmMixin, SAC):
    """Tianshou's SAC with guidance hooks."""


class GuidedDiscreteSAC(GuidedAlgorithmMixin, DiscreteSAC):
    """Tianshou's discrete SAC with guidance hooks."""


def _orthogonal_init(*modules: torch.nn.Module) -> None:
    for module in modules:
        for m in module.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.orthogonal_(m.weight)
                torch.nn.init.zeros_(m.bias)


def _ppo_init(actor: torch.nn.Module, critic: torch.nn.Module) -> None:
    """Orthogonal gains as SB3 and CleanRL set them for PPO: sqrt(2) in hidden layers, 0.01 on the
    policy output, 1 on the value output (biases stay 0)."""
    for net in (actor.preprocess, critic.preprocess):  # type: ignore[union-attr]
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.orthogonal_(m.weight, gain=float(np.sqrt(2)))
    head = getattr(actor, "last", None) or actor.mu  # type: ignore[union-attr]
    for m in head.modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.orthogonal_(m.weight, gain=0.01)
    for m in critic.last.modules():  # type: ignore[union-attr]
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.orthogonal_(m.weight, gain=1.0)


# -- the algorithm registry -----------------------------------------------------------------------

Builder = Callable[["RunConfig", gym.Env, torch.device], tuple[Algorithm, str]]
"""``build(config, env, device) -> (algorithm, optimiser attribute)``: a Tianshou algorithm that mixes
in :class:`GuidedAlgorithmMixin` (first in its bases), for the env's spaces (``env`` is a probe
instance, closed afterwards), and the name of the attribute holding its policy optimiser (where
``update_policy`` losses join)."""


@attrs.frozen(kw_only=True)
class AlgorithmSpec:
    """One registered algorithm."""

    name: str
    """What ``algo = "..."`` names."""
    build: Builder
    """Builds the algorithm (see :data:`Builder`)."""
    settings: Callable[[RunConfig], Any]
    """The algorithm's settings in a run config; the loop reads ``steps_per_collect`` and
    ``batch_size`` from it, plus ``repeat`` (on-policy) or ``buffer_size``, ``start_steps`` and
    ``updates_per_step`` (off-policy)."""
    on_policy: bool
    """On-policy: the buffer is cleared after each update and not saved with checkpoints."""
    description: str = ""
    """One line for listings."""


class AlgorithmRegistry:
    """Algorithms by name. The built-in ones are ``ppo``, ``dqn`` and ``sac``; a third party adds its
    own with :meth:`register` (at import time of the module that defines it, e.g. its method plugin)."""

    def __init__(self) -> None:
        self._specs: dict[str, AlgorithmSpec] = {}

    def register(
        self, name: str, build: Builder, *, settings: Callable[[RunConfig], Any], on_policy: bool, description: str = ""
    ) -> None:
        """Make ``algo = name`` build with ``build``; registering a taken name is an error."""
        if name in self._specs and self._specs[name].build is not build:
            raise PluginError(f"algorithm {name!r} is registered twice; choose another name")
        self._specs[name] = AlgorithmSpec(name=name, build=build, settings=settings, on_policy=on_policy, description=description)

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests, or a plugin replacing its own entry)."""
        self._specs.pop(name, None)

    def get(self, name: str) -> AlgorithmSpec:
        """The spec of ``name``; an unknown name is a :class:`ConfigError` naming the registered ones."""
        if name not in self._specs:
            raise ConfigError(
                f"unknown algo {name!r}.{did_you_mean(name, list(self._specs))} Registered: {', '.join(self._specs)} "
                "(a third-party algorithm registers itself when its module is imported; see CONTRIBUTING.md)."
            )
        return self._specs[name]

    def __iter__(self) -> Iterator[AlgorithmSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: str) -> bool:
        return name in self._specs


ALGORITHMS = AlgorithmRegistry()
"""The registry ``build_algorithm`` looks ``config.algo`` up in."""


def build_algorithm(config: RunConfig, env: gym.Env, device: torch.device) -> tuple[Algorithm, str]:
    """A guided Tianshou algorithm for ``config.algo`` and the env's spaces, and the name of the
    attribute holding its policy optimiser."""
    spec = ALGORITHMS.get(config.algo)
    if not isinstance(env.observation_space, gym.spaces.Box):
        raise ConfigError(
            f"env {config.env!r} has a {type(env.observation_space).__name__} observation space; guidedrl's built-in "
            "networks take Box observations. Flatten it in the env adapter's make()."
        )
    return spec.build(config, env, device)


def _categorical(probs: torch.Tensor) -> torch.distributions.Categorical:
    """PPO's action distribution (the actor ends in a softmax), without torch's argument checks: they
    run on every forward pass (each env step, each minibatch) and only turn non-finite outputs into a
    ValueError; the values are the same. A loss that became non-finite still stops the run
    (``hooks.check_losses``), and sampling refuses NaN probabilities."""
    return torch.distributions.Categorical(probs=probs, validate_args=False)


def _build_ppo(config: RunConfig, env: gym.Env, device: torch.device) -> tuple[Algorithm, str]:
    state_shape, act_space = env.observation_space.shape, env.action_space
    discrete = isinstance(act_space, gym.spaces.Discrete)
    c = config.ppo
    act_fn = {"auto": torch.nn.ReLU if discrete else torch.nn.Tanh, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[c.activation]
    if discrete:
        actor = DiscreteActor(
            preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden, activation=act_fn), action_shape=int(act_space.n)
        )
        critic = DiscreteCritic(preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden, activation=act_fn))
        policy: ProbabilisticActorPolicy = DiscreteActorPolicy(
            actor=actor, dist_fn=_categorical, action_space=act_space, deterministic_eval=True
        )
    else:
        actor = ContinuousActorProbabilistic(
            preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden, activation=act_fn),
            action_shape=act_space.shape,
            unbounded=True,
        )
        critic = ContinuousCritic(preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden, activation=act_fn))

        def dist_fn(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
            loc, scale = loc_scale
            normal = torch.distributions.Normal(loc, scale, validate_args=False)  # see _categorical
            return torch.distributions.Independent(normal, 1, validate_args=False)

        policy = ProbabilisticActorPolicy(
            actor=actor, dist_fn=dist_fn, action_space=act_space, deterministic_eval=True, action_bound_method="clip"
        )
    if c.init != "default":
        _orthogonal_init(actor, critic)
    if c.init == "ppo":
        _ppo_init(actor, critic)
    if not discrete:
        torch.nn.init.constant_(actor.sigma_param, c.log_std_init)  # type: ignore[union-attr]
    actor.to(device), critic.to(device)
    algo = GuidedPPO(
        policy=policy,
        critic=critic,
        optim=AdamOptimizerFactory(lr=c.lr, eps=c.adam_eps),
        eps_clip=c.eps_clip,
        vf_coef=c.vf_coef,
        ent_coef=c.ent_coef,
        max_grad_norm=c.max_grad_norm,
        gae_lambda=c.gae_lambda,
        gamma=c.gamma,
        advantage_normalization=c.advantage_normalization,
    )
    return algo, "optim"


def _build_dqn(config: RunConfig, env: gym.Env, device: torch.device) -> tuple[Algorithm, str]:
    state_shape, act_space = env.observation_space.shape, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        raise ConfigError(f"algo 'dqn' needs discrete actions, but {config.env!r} has {act_space}; use algo = 'sac' or 'ppo'.")
    c = config.dqn
    net = Net(state_shape=state_shape, action_shape=int(act_space.n), hidden_sizes=c.hidden).to(device)
    dqn_policy = DiscreteQLearningPolicy(
        model=net,
        action_space=act_space,
        eps_training=c.eps_train_start if c.eps_decay_steps else c.eps_train,
        eps_inference=c.eps_test,
    )
    algo = GuidedDQN(
        policy=dqn_policy,
        optim=AdamOptimizerFactory(lr=c.lr),
        gamma=c.gamma,
        n_step_return_horizon=c.n_step,
        target_update_freq=c.target_update_freq,
        is_double=c.double,
        huber_loss_delta=c.huber_delta or None,
        max_grad_norm=c.max_grad_norm or None,
    )
    return algo, "optim"


def _build_sac(config: RunConfig, env: gym.Env, device: torch.device) -> tuple[Algorithm, str]:
    """SAC for Box actions; Tianshou's discrete SAC (Christodoulou 2019) for Discrete ones."""
    state_shape, act_space = env.observation_space.shape, env.action_space
    c = config.sac
    if isinstance(act_space, gym.spaces.Discrete):
        return _build_discrete_sac(config, env, device)
    if not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(f"algo 'sac' needs Box or Discrete actions, but {config.env!r} has {act_space}; use algo = 'ppo'.")
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden),
        action_shape=act_space.shape,
        unbounded=True,
        conditioned_sigma=True,
    ).to(device)

    def critic_net() -> ContinuousCritic:
        return ContinuousCritic(
            preprocess_net=Net(state_shape=state_shape, action_shape=act_space.shape, hidden_sizes=c.hidden, concat=True)
        ).to(device)

    alpha: float | AutoAlpha = c.alpha
    if c.auto_alpha:
        alpha = AutoAlpha(
            target_entropy=-float(np.prod(act_space.shape)),
            log_alpha=float(np.log(c.alpha)),
            optim=AdamOptimizerFactory(lr=c.actor_lr),
        ).to(device)
    algo = GuidedSAC(
        policy=SACPolicy(actor=actor, action_space=act_space),
        policy_optim=AdamOptimizerFactory(lr=c.actor_lr),
        critic=critic_net(),
        critic_optim=AdamOptimizerFactory(lr=c.critic_lr),
        critic2=critic_net(),
        critic2_optim=AdamOptimizerFactory(lr=c.critic_lr),
        tau=c.tau,
        gamma=c.gamma,
        alpha=alpha,
        n_step_return_horizon=c.n_step,
    )
    return algo, "policy_optim"


def _build_discrete_sac(config: RunConfig, env: gym.Env, device: torch.device) -> tuple[Algorithm, str]:
    state_shape, n = env.observation_space.shape, int(env.action_space.n)
    c = config.sac
    actor = DiscreteActor(
        preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden), action_shape=n, softmax_output=False
    ).to(device)

    def critic_net() -> DiscreteCritic:
        return DiscreteCritic(preprocess_net=Net(state_shape=state_shape, hidden_sizes=c.hidden), last_size=n).to(device)

    alpha: float | AutoAlpha = c.alpha
    if c.auto_alpha:
        alpha = AutoAlpha(
            target_entropy=c.discrete_target_entropy * float(np.log(n)),
            log_alpha=float(np.log(c.alpha)),
            optim=AdamOptimizerFactory(lr=c.actor_lr),
        ).to(device)
    algo = GuidedDiscreteSAC(
        policy=DiscreteSACPolicy(actor=actor, action_space=env.action_space),
        policy_optim=AdamOptimizerFactory(lr=c.actor_lr),
        critic=critic_net(),
        critic_optim=AdamOptimizerFactory(lr=c.critic_lr),
        critic2=critic_net(),
        critic2_optim=AdamOptimizerFactory(lr=c.critic_lr),
        tau=c.tau,
        gamma=c.gamma,
        alpha=alpha,
        n_step_return_horizon=c.n_step,
    )
    return algo, "policy_optim"


ALGORITHMS.register(
    "ppo", _build_ppo, settings=lambda cfg: cfg.ppo, on_policy=True, description="PPO, discrete or continuous actions"
)
ALGORITHMS.register("dqn", _build_dqn, settings=lambda cfg: cfg.dqn, on_policy=False, description="DQN, discrete actions")
ALGORITHMS.register(
    "sac", _build_sac, settings=lambda cfg: cfg.sac, on_policy=False,
    description="SAC; continuous actions, or discrete ones (Tianshou's DiscreteSAC)",
)


def apply_schedules(algorithm: Algorithm, config: RunConfig, env_steps: int) -> None:
    """Set the scheduled hyper-parameters for the env steps done so far: PPO's linear learning rate
    and clip range (``lr_schedule``, ``clip_schedule``), DQN's exploration decay (``eps_decay_steps``).

    Computed from ``env_steps`` alone rather than by a torch LR scheduler, so a resumed run continues
    the schedule without scheduler state in its checkpoint.
    """
    if config.algo == "ppo":
        c = config.ppo
        remaining = max(0.0, 1.0 - env_steps / config.steps)  # SB3's "progress remaining"
        if c.lr_schedule == "linear":
            optim = getattr(algorithm.optim, "_inner", algorithm.optim)  # under the guidance wrapper
            for group in optim._optim.param_groups:
                group["lr"] = c.lr * remaining
        if c.clip_schedule == "linear":
            algorithm.eps_clip = c.eps_clip * remaining  # type: ignore[attr-defined]
    elif config.algo == "dqn" and config.dqn.eps_decay_steps:
        c = config.dqn
        frac = min(1.0, env_steps / c.eps_decay_steps)
        algorithm.policy.set_eps_training(c.eps_train_start + frac * (c.eps_train - c.eps_train_start))  # type: ignore[attr-defined]

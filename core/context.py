"""The run context every hook receives as ``ctx``."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from guidedrl.types import CriticalState, Demonstrations

if TYPE_CHECKING:
    from guidedrl.config import RunConfig
    from guidedrl.plugins import GuidedPluginManager


class RunContext:
    """What a hook can see and use during a run.

    Attributes plugins read: ``config``, ``adapter``, ``llm`` (lazy), ``algorithm`` / ``policy``,
    ``device``, ``replay``, ``env_steps``, ``rng``, ``demos``, ``critical_states``, ``state`` (a dict per
    plugin for anything else) and ``counters`` (numbers that end up in ``summary.json``).
    """

    def __init__(
        self,
        *,
        config: RunConfig,
        adapter: Any,
        pm: GuidedPluginManager,
        run_dir: Path,
        device: torch.device,
        logger: Any = None,
    ) -> None:
        self.config = config
        self.adapter = adapter
        self.pm = pm
        self.run_dir = run_dir
        self.device = device
        self.logger = logger
        self.algorithm: Any = None
        self.replay: Any = None
        """The training replay buffer of an off-policy single-agent run (set when training starts;
        ``None`` otherwise): what ``guidance.set_bonus`` writes to."""
        self.env_steps = 0
        self.rng = np.random.default_rng(config.seed)
        self.demos: list[Demonstrations] = []
        self.critical_states: list[CriticalState] = []
        self.state: dict[str, dict[str, Any]] = collections.defaultdict(dict)
        self.counters: collections.Counter[str] = collections.Counter()
        self._llm: Any = None

    # -- counters ----------------------------------------------------------------------------
    def method_counters(self) -> dict[str, dict[str, int]]:
        """What each method of the run counted, ``{"ultra": {"critical_states": 12, ...}}``, in the
        run's method order (a method that counted nothing has ``{}``): the counters a method names
        ``"<method>/<what>"`` (``ctx.counters["ultra/critical_states"] += n``). ``summary.json`` holds
        them under ``method_counters``; ``guidedrl run`` prints a line per method."""
        return counters_by_method(self.counters, self.methods)

    # -- plugins -----------------------------------------------------------------------------
    def method_config(self, name: str) -> Any:
        """The config object of method ``name`` (its ``Config`` instance), or ``None``."""
        plugin = self.pm.get_plugin(name)
        return getattr(plugin, "config", None)

    @property
    def methods(self) -> list[str]:
        return list(self.pm.method_order)

    # -- the policy --------------------------------------------------------------------------
    @property
    def policy(self) -> Any:
        return self.algorithm.policy if self.algorithm is not None else None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The current policy's env-space actions for a batch of observations, as in evaluation
        (eval mode: PPO/SAC take their deterministic action, DQN its test epsilon)."""
        from tianshou.data import Batch
        from tianshou.utils.torch_utils import torch_train_mode

        policy = self.policy
        with torch.no_grad(), torch_train_mode(policy, enabled=False):
            act = policy(Batch(obs=np.asarray(obs), info={})).act
        act = act.cpu().numpy() if isinstance(act, torch.Tensor) else np.asarray(act)
        return policy.map_action(act)

    # -- environments and the LLM --------------------------------------------------------------
    def make_env(self, **kwargs: Any) -> Any:
        """A fresh env instance, for rollouts a method does on its own."""
        return self.adapter.make(**kwargs)

    @property
    def llm(self) -> Any:
        """The run's :class:`guidedrl.llm.LLMClient` (created on first use)."""
        if self._llm is None:
            from guidedrl.llm import LLMClient

            self._llm = LLMClient.from_config(self.config.llm, adapter=self.adapter, run_dir=self.run_dir)
        return self._llm

    @property
    def llm_started(self) -> bool:
        return self._llm is not None

    def require_adapter(self, method: str) -> None:
        """Fail early, naming the missing adapter, when a method needs text for a plain env. (A method
        that declares ``requires = ("describe", ...)`` is checked before training starts instead.)"""
        from guidedrl.envs import MissingAdapterError, PlainGymAdapter

        if isinstance(self.adapter, PlainGymAdapter):
            raise MissingAdapterError(
                f"method {method!r} asks an LLM about states, but env {self.adapter.env_id!r} has no "
                "guidedrl adapter. Install one that registers this id (see `guidedrl envs`) or write "
                "one (CONTRIBUTING.md, 'Writing an environment adapter')."
            )

    def log(self, name: str, value: float) -> None:
        """Log a scalar at the current env step (TensorBoard + metrics.jsonl)."""
        if self.logger is not None:
            self.logger.scalar(name, float(value), self.env_steps)


def counters_by_method(counters: dict[str, Any], methods: list[str]) -> dict[str, dict[str, Any]]:
    """The ``"<method>/<what>"`` entries of ``counters`` grouped by method, names sorted."""
    out: dict[str, dict[str, Any]] = {m: {} for m in methods}
    for key in sorted(counters):
        method, sep, what = key.partition("/")
        if sep and method in out:
            out[method][what] = counters[key]
    return out

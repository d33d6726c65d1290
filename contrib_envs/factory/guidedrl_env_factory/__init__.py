"""Shop-floor digital twins for guided multi-agent RL (PettingZoo parallel envs).

Ids: ``factory:human-machine-v0``, ``factory:maintenance-v0``, ``factory:warehouse-v0``,
``factory:manufacturing-v0`` — one simulator, four parameter sets, the same agent interface.
"""

from __future__ import annotations

import functools

import guidedrl

from guidedrl_env_factory.adapter import FactoryAdapter, describe_state
from guidedrl_env_factory.domains import DOMAINS, Domain
from guidedrl_env_factory.env import FactoryParallelEnv
from guidedrl_env_factory.expert import Coordinator
from guidedrl_env_factory.plans import PlanExecutor, validate_plan
from guidedrl_env_factory.sim import FactorySim

__all__ = [
    "DOMAINS",
    "Coordinator",
    "Domain",
    "FactoryAdapter",
    "FactoryParallelEnv",
    "FactorySim",
    "PlanExecutor",
    "describe_state",
    "parallel_env",
    "validate_plan",
]


def parallel_env(domain: str = "human-machine", **kwargs) -> FactoryParallelEnv:
    """PettingZoo-style constructor: ``parallel_env("warehouse", n_agents=6)``."""
    return FactoryParallelEnv(domain, **kwargs)


@guidedrl.hookimpl
def register_envs(register) -> None:
    for name, dom in DOMAINS.items():
        register(f"factory:{name}-v0", functools.partial(FactoryAdapter, name), summary=dom.title)

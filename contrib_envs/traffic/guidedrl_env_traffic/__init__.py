"""A road-network routing twin for guided multi-agent RL (PettingZoo parallel env): vehicles are agents.

Ids: ``traffic:grid4x4-v0``, ``traffic:grid6x6-v0``, ``traffic:grid8x8-v0`` — one simulator, three grid
sizes, the same agent interface (``env_kwargs``: ``n_vehicles`` 1 … 256, ``horizon``, the BPR rules).
"""

from __future__ import annotations

import functools

import guidedrl

from guidedrl_env_traffic.adapter import PlanRollout, TrafficAdapter, describe_state
from guidedrl_env_traffic.env import TrafficParallelEnv
from guidedrl_env_traffic.expert import RoutingExpert
from guidedrl_env_traffic.plans import PlanExecutor, parse_plan, validate_plan
from guidedrl_env_traffic.sim import TrafficConfig, TrafficSim

__all__ = [
    "GRIDS",
    "PlanExecutor",
    "PlanRollout",
    "RoutingExpert",
    "TrafficAdapter",
    "TrafficConfig",
    "TrafficParallelEnv",
    "TrafficSim",
    "describe_state",
    "parallel_env",
    "parse_plan",
    "validate_plan",
]

#: The registered grids: ``traffic:grid<R>x<C>-v0``.
GRIDS = ((4, 4), (6, 6), (8, 8))


def parallel_env(rows: int = 4, cols: int = 4, **kwargs) -> TrafficParallelEnv:
    """PettingZoo-style constructor: ``parallel_env(6, 6, n_vehicles=16)``."""
    return TrafficParallelEnv(rows, cols, **kwargs)


@guidedrl.hookimpl
def register_envs(register) -> None:
    for r, c in GRIDS:
        register(f"traffic:grid{r}x{c}-v0", functools.partial(TrafficAdapter, r, c),
                 summary=f"Vehicle routing on a {r}x{c} road grid with congestion (PettingZoo parallel)")

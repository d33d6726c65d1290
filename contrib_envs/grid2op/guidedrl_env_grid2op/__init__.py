"""Grid2Op adapters (LightSim2Grid backend, offline ``test=True`` datasets): ``grid2op:l2rpn_case14_sandbox``
(219 actions) and ``grid2op:l2rpn_neurips_2020_track1`` (66,929 actions)."""

from __future__ import annotations

from typing import Any

from guidedrl import hookimpl
from guidedrl_env_grid2op.adapter import Case14Adapter, GreedyExpert, Grid2OpAdapter, Neurips2020Adapter
from guidedrl_env_grid2op.env import Grid2OpEnv
from guidedrl_env_grid2op.vocabulary import PROMPT_BOUND, GridActions

__all__ = [
    "PROMPT_BOUND", "Case14Adapter", "GreedyExpert", "GridActions", "Grid2OpAdapter", "Grid2OpEnv", "Neurips2020Adapter",
]


@hookimpl
def register_envs(register: Any) -> None:
    register(
        Case14Adapter.env_id, Case14Adapter,
        summary="Grid2Op IEEE 14-bus sandbox: 219 factored topology actions, greedy simulating expert",
    )
    register(
        Neurips2020Adapter.env_id, Neurips2020Adapter,
        summary="Grid2Op NeurIPS 2020 track 1: 66,929 factored topology actions, greedy simulating expert",
    )

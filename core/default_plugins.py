"""Core default plugins: registered in every run's manager, as any plugin is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from guidedrl.hookspecs import hookimpl
from guidedrl.types import Demonstrations

if TYPE_CHECKING:
    from guidedrl.context import RunContext


@hookimpl
def generate_demonstrations(ctx: RunContext) -> Demonstrations | None:
    """Load demonstrations from ``pretrain.demos_path`` (an ``.npz`` with obs, act, rew, obs_next,
    terminated, truncated), when the run's config names one."""
    path = ctx.config.pretrain.demos_path
    if not path:
        return None
    with np.load(path, allow_pickle=False) as data:
        return Demonstrations(
            obs=data["obs"],
            act=data["act"],
            rew=data["rew"],
            obs_next=data["obs_next"],
            terminated=data["terminated"],
            truncated=data["truncated"],
            meta={"path": str(path)},
        )

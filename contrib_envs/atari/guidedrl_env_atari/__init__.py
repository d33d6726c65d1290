"""Atari adapters for guidedrl: ``ALE/Pong-v5`` (RAM by default, pixels as an option).

``ALE/Pong-ram-v5`` is an alias that always uses RAM observations.
"""

from __future__ import annotations

from typing import Any

from guidedrl import hookimpl
from guidedrl_env_atari.pong import PongActions, PongAdapter, PongExpert, decode_pixels, decode_ram

__all__ = ["PongActions", "PongAdapter", "PongExpert", "decode_pixels", "decode_ram", "register_envs"]


def _pong_ram(**kwargs: Any) -> PongAdapter:
    """ALE/Pong-v5 with RAM observations (alias)."""
    kwargs.pop("obs_type", None)
    return PongAdapter(obs_type="ram", **kwargs)


@hookimpl
def register_envs(register: Any) -> None:
    register("ALE/Pong-v5", PongAdapter, summary="Pong: RAM (default) or pixels, decoded positions, ball-tracking expert")
    register("ALE/Pong-ram-v5", _pong_ram, summary="Pong with RAM observations (alias of ALE/Pong-v5, obs_type='ram')")

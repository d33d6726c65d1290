"""guidedrl: LLM-guided reinforcement learning as pluggy plugins over Tianshou policies.

The five hooks live in :mod:`guidedrl.hookspecs`; plugins mark their implementations with
:data:`hookimpl`. The hook value classes (:class:`Episode`, ...) load on first access, so
``import guidedrl`` (and ``guidedrl --help``) stays cheap: nothing here imports torch or Tianshou.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guidedrl.hookspecs import hookimpl, hookspec

if TYPE_CHECKING:
    from guidedrl.types import ActionAdvice, CriticalState, Demonstrations, Episode, PolicyUpdate

__version__ = "0.1.0"

_TYPES = ("ActionAdvice", "CriticalState", "Demonstrations", "Episode", "PolicyUpdate")

__all__ = [*_TYPES, "__version__", "hookimpl", "hookspec"]


def __getattr__(name: str) -> Any:  # PEP 562: ``guidedrl.Episode`` imports guidedrl.types on first use
    if name in _TYPES:
        from guidedrl import types

        return getattr(types, name)
    raise AttributeError(f"module 'guidedrl' has no attribute {name!r}")

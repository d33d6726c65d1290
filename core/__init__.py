"""guidedrl: LLM-guided reinforcement learning as pluggy plugins over Tianshou policies.

The five hooks live in :mod:`guidedrl.hookspecs`; plugins mark their implementations with
:data:`hookimpl`.
"""

from guidedrl.hookspecs import hookimpl, hookspec
from guidedrl.types import (
    ActionAdvice,
    CriticalState,
    Demonstrations,
    Episode,
    PolicyUpdate,
)

__version__ = "0.1.0"

__all__ = [
    "ActionAdvice",
    "CriticalState",
    "Demonstrations",
    "Episode",
    "PolicyUpdate",
    "__version__",
    "hookimpl",
    "hookspec",
]

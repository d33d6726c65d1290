"""Vector environments by config: Tianshou's Dummy (default), Subproc or Ray vector envs."""

from __future__ import annotations

from typing import Any

from tianshou.env import DummyVectorEnv, SubprocVectorEnv

from guidedrl.errors import ConfigError


def make_vector_env(adapter: Any, n: int, kind: str, *, seed: int) -> Any:
    fns = [adapter.make for _ in range(n)]
    if kind == "dummy":
        venv = DummyVectorEnv(fns)
    elif kind == "subproc":
        venv = SubprocVectorEnv(fns)
    elif kind == "ray":
        try:
            from tianshou.env import RayVectorEnv
        except ImportError as exc:  # pragma: no cover - depends on ray being installed
            raise ConfigError("train.vector = 'ray' needs Ray: pip install 'guidedrl[ray]'") from exc
        try:
            venv = RayVectorEnv(fns)
        except Exception as exc:  # Ray raises its own types when it is missing or cannot start
            raise ConfigError(f"train.vector = 'ray' could not start Ray vector envs: {exc}. pip install 'guidedrl[ray]'") from exc
    else:
        raise ConfigError(f"train.vector must be dummy, subproc or ray, not {kind!r}")
    venv.seed([seed + i for i in range(n)])
    return venv

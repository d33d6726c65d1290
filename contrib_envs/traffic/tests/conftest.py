"""Register the traffic ids when the distribution is not installed (tests run from a source tree)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)  # per test: another test may have reset the registries
def _traffic_registered():
    import guidedrl_env_traffic
    from guidedrl.registry import ENVS

    if "traffic:grid4x4-v0" not in ENVS.ids():  # the entry point registers them once installed
        guidedrl_env_traffic.register_envs(
            register=lambda id, factory, summary="": ENVS.add(id, factory, source="traffic", summary=summary)
        )

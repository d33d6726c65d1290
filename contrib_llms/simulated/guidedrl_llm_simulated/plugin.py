"""Entry point of group ``guidedrl.llms``: registers the ``simulated`` backend."""

from __future__ import annotations

from collections.abc import Callable

import guidedrl

from guidedrl_llm_simulated.model import make_simulated


@guidedrl.hookimpl
def register_llms(register: Callable[..., None]) -> None:
    register("simulated", make_simulated, summary="Offline stand-in: answers from the env adapter's expert.")

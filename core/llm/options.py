"""Helpers for backend factories (``register_llms``): checking ``llm.options``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from guidedrl.errors import ConfigError, did_you_mean


def check_options(backend: str, given: Iterable[str], allowed: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the first unknown option, a close match and all options."""
    for key in given:
        if key not in allowed:
            raise ConfigError(
                f"unknown option llm.options.{key} for the {backend} backend.{did_you_mean(key, allowed)} "
                f"Options: {', '.join(allowed)}."
            )

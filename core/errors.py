"""Errors users meet, each saying what to change."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GuidedRLError(Exception):
    """Base class for guidedrl's user-facing errors."""


class ConfigError(GuidedRLError, ValueError):
    """A config value is wrong; the message names the field and the fix."""


class PluginError(GuidedRLError):
    """A plugin is unknown, fails to load, or is written wrongly."""


class AdapterError(PluginError):
    """An env adapter lacks what the run needs (a description, an action vocabulary, an expert,
    ``simulate``, a plan executor), found at start-up; the message names the adapter, the missing
    piece and the section of CONTRIBUTING.md to read."""


class HookError(PluginError):
    """A method's hook raised, or returned something the core cannot use (wrong type, shape or dtype,
    a non-finite number, an illegal action), or its result made the training loss non-finite.

    The message starts with ``method '<plugin>', hook '<hook>':``; ``plugin`` and ``hook`` hold them.
    """

    def __init__(self, plugin: str, hook: str, message: str) -> None:
        self.plugin = plugin
        self.hook = hook
        self.detail = message
        super().__init__(f"method {plugin!r}, hook {hook!r}: {message}")

    def __reduce__(self) -> tuple:  # picklable despite the custom signature
        return (HookError, (self.plugin, self.hook, self.detail))


class RunFileError(GuidedRLError):
    """A run-directory file is missing, damaged or unsafe; the message names the file, what is
    wrong with it and the way forward."""


class ConfigWarning(UserWarning):
    """A setting works, but not as its value suggests (e.g. ``steps`` that is not a whole number of
    collections); the CLI prints it as one line."""


class RunFileWarning(UserWarning):
    """Something in a run directory or cache was damaged and the run went on without it (a
    fallback to the previous checkpoint, a cache moved aside, a torn metrics line skipped)."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' Did you mean 'a' or 'b'?' for close matches, else ''."""
    choices = list(dict.fromkeys(choices))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)]
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"

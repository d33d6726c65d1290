"""Registries of environment adapters and LLM backends, filled through entry points.

A distribution in group ``guidedrl.envs`` (or ``guidedrl.llms``) points at a module or object that
implements ``register_envs(register)`` (or ``register_llms(register)``). Registries are filled the
first time they are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs

from guidedrl.errors import ConfigError, PluginError, did_you_mean


@attrs.define
class Entry:
    id: str
    factory: Callable[..., Any]
    source: str
    """Which registration plugin registered it (entry point name)."""
    summary: str = ""


class Registry:
    """id → factory, with 'did you mean' errors and duplicate detection."""

    def __init__(self, kind: str, hook: str, group: str) -> None:
        self.kind = kind
        self.hook = hook
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from guidedrl.plugins import registry_manager

        try:
            pm = registry_manager(self.group)
            for impl in getattr(pm.hook, self.hook).get_hookimpls():
                source = impl.plugin_name

                def register(
                    id: str, factory: Callable[..., Any], summary: str = "", _source: str = source
                ) -> None:
                    self.add(id, factory, source=_source, summary=summary)

                impl.function(register=register)
        except BaseException:  # a plugin failed to load: try again next time, not a half-filled registry for good
            self._loaded = False
            raise

    def add(self, id: str, factory: Callable[..., Any], *, source: str = "user", summary: str = "") -> None:
        if id in self._entries and self._entries[id].source != source:
            raise PluginError(
                f"{self.kind} {id!r} is registered twice: by {self._entries[id].source} and by {source}. "
                "Uninstall one, or restrict loading with GUIDEDRL_PLUGINS."
            )
        self._entries[id] = Entry(id, factory, source, summary or (factory.__doc__ or "").strip().split("\n")[0])

    def get(self, id: str) -> Entry | None:
        self._load()
        return self._entries.get(id)

    def ids(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        self._load()
        return iter(sorted(self._entries.values(), key=lambda e: e.id))

    def __contains__(self, id: str) -> bool:
        return self.get(id) is not None

    def clear(self) -> None:
        self._entries.clear()
        self._loaded = False

    def unknown(self, id: str, extra_choices: list[str] | None = None, hint: str = "") -> PluginError:
        choices = self.ids() + list(extra_choices or [])
        return PluginError(
            f"unknown {self.kind} {id!r}.{did_you_mean(id, choices)} "
            f"Registered: {', '.join(self.ids()) or 'none'}. {hint}"
            "Run `guidedrl plugins` to see what is installed."
        )


ENVS = Registry("environment", "register_envs", "envs")
LLMS = Registry("LLM backend", "register_llms", "llms")


def make_adapter(env_id: str, **kwargs: Any) -> Any:
    """The adapter for ``env_id``: a registered one, else a plain Gymnasium env (trains, no text)."""
    entry = ENVS.get(env_id)
    if entry is not None:
        try:
            return entry.factory(**kwargs)
        except (TypeError, ValueError) as exc:  # wrong env_kwargs: a user mistake, not a traceback
            raise ConfigError(
                f"environment {env_id!r} could not be made with env_kwargs {kwargs}: {type(exc).__name__}: {exc}. "
                "Fix env_kwargs (see the adapter's documentation, `guidedrl envs`)."
            ) from exc
    import gymnasium as gym

    from guidedrl.envs import PlainGymAdapter

    if env_id in gym.registry:
        return PlainGymAdapter(env_id, **kwargs)
    raise ENVS.unknown(
        env_id,
        extra_choices=list(gym.registry),
        hint="Gymnasium ids work without an adapter once their package is installed (e.g. "
        "`pip install ale-py` for ALE/..., `pip install mujoco` for MuJoCo). ",
    )


def make_llm(spec: str, *, adapter: Any = None, **options: Any) -> Any:
    """A LangChain ``BaseChatModel`` for ``spec``: a registered backend id (``simulated``), a backend
    id with a model (``openai:gpt-4o-mini``, ``llamacpp:gemma3-270m``), or any LangChain
    ``provider:model`` that ``init_chat_model`` knows."""
    name, _, model = spec.partition(":")
    entry = LLMS.get(name)
    if entry is not None:
        if model:
            options.setdefault("model", model)
        return entry.factory(adapter=adapter, **options)
    if model:
        try:
            from langchain.chat_models import init_chat_model
        except ImportError as exc:  # pragma: no cover - langchain is a dependency
            raise PluginError("`provider:model` specs need the `langchain` package") from exc
        try:
            return init_chat_model(spec, **options)
        except (ImportError, ValueError) as exc:
            raise PluginError(
                f"LangChain could not make chat model {spec!r}: {exc}. Registered guidedrl backends: "
                f"{', '.join(LLMS.ids()) or 'none'}."
            ) from exc
    raise LLMS.unknown(spec, hint="Any LangChain `provider:model` works when its package is installed. ")

"""Plugin discovery and the per-run plugin manager.

Three entry-point groups: ``guidedrl.methods`` (method plugins), ``guidedrl.envs`` (env adapters)
and ``guidedrl.llms`` (LLM backends). First-party plugins load exactly as third-party ones do.

Environment variables:

- ``GUIDEDRL_PLUGINS``: comma-separated entry-point names (or distribution names) allowed to load;
  unset means all installed plugins.
- ``GUIDEDRL_TRACE_PLUGINS``: set to ``1`` to print every hook call and result to stderr.
- ``GUIDEDRL_CACHE_DIR``: where ``guidedrl plugins`` keeps its listing (``plugins.json``; default
  ``~/.cache/guidedrl``), see :func:`cached_listing`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import importlib.util
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pluggy

from guidedrl import hookspecs
from guidedrl.errors import ConfigError, PluginError, did_you_mean

GROUPS = {"methods": "guidedrl.methods", "envs": "guidedrl.envs", "llms": "guidedrl.llms"}
ALLOW_ENV = "GUIDEDRL_PLUGINS"
TRACE_ENV = "GUIDEDRL_TRACE_PLUGINS"


@attrs.frozen
class PluginInfo:
    """One entry point of one of the three groups."""

    name: str
    group: str
    value: str
    dist: str
    version: str
    entry_point: md.EntryPoint = attrs.field(eq=False, repr=False)

    def load(self) -> Any:
        try:
            return self.entry_point.load()
        except Exception as exc:  # any import-time failure is re-raised with its provenance
            raise PluginError(
                f"plugin {self.name!r} (entry point {self.value!r} in group {self.group!r}, "
                f"distribution {self.dist} {self.version}) failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def _allowed() -> set[str] | None:
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def discover(kind: str) -> dict[str, PluginInfo]:
    """Installed entry points of one group (``methods``, ``envs`` or ``llms``), by name.

    Raises :class:`PluginError` when two distributions register the same name.
    """
    group = GROUPS[kind]
    allowed = _allowed()
    found: dict[str, PluginInfo] = {}
    seen_dists: dict[tuple[str, str], bool] = {}
    for ep in md.entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        # The same distribution can be visible twice (e.g. editable + site): count it once.
        if seen_dists.get((ep.name, dist)):
            continue
        seen_dists[(ep.name, dist)] = True
        if allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        info = PluginInfo(ep.name, group, ep.value, dist, version, ep)
        if ep.name in found:
            other = found[ep.name]
            raise PluginError(
                f"{kind[:-1]} id {ep.name!r} is registered twice: by {other.dist} {other.version} "
                f"({other.value}) and by {dist} {version} ({ep.value}). Uninstall one of them, or "
                f"restrict loading with {ALLOW_ENV}=<names>."
            )
        found[ep.name] = info
    return found


def _unknown(kind: str, name: str, choices: Sequence[str]) -> PluginError:
    listing = ", ".join(sorted(choices)) or "none installed"
    return PluginError(
        f"unknown {kind} {name!r}.{did_you_mean(name, choices)} Installed: {listing}. "
        f"Run `guidedrl plugins` to see what is installed and where it comes from."
    )


def guidance_hooks_of(plugin: Any) -> list[str]:
    """Names of the guidance hooks a plugin object implements (marked with ``@hookimpl``)."""
    names = []
    for name in hookspecs.GUIDANCE_HOOKS:
        attr = getattr(plugin, name, None)
        if attr is not None and hasattr(attr, f"{hookspecs.PROJECT}_impl"):
            names.append(name)
    return names


def _declared_hook_names(plugin: Any) -> list[str]:
    return [
        name
        for name in dir(plugin)
        if not name.startswith("_") and hasattr(getattr(plugin, name, None), f"{hookspecs.PROJECT}_impl")
    ]


def method_config_class(obj: Any) -> type | None:
    """The attrs config class a method plugin declares as ``Config``, if any."""
    cfg = getattr(obj, "Config", None)
    return cfg if inspect.isclass(cfg) and attrs.has(cfg) else None


def build_method_config(name: str, obj: Any, raw: Mapping[str, Any]) -> Any:
    """Instantiate a method's ``Config`` from a mapping, with errors that name the field."""
    cls = method_config_class(obj)
    if cls is None:
        if raw:
            raise ConfigError(
                f"method {name!r} takes no settings, but the config gives [{name}] {dict(raw)}; remove them."
            )
        return None
    from guidedrl.config import _coerce  # the core's own conversions and type errors

    try:
        attrs.resolve_types(cls)  # string annotations (``from __future__ import annotations``) → types
    except Exception:  # noqa: BLE001 - an unresolvable annotation is left unchecked, as before
        pass
    fields = {f.name: f for f in attrs.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"unknown setting {name}.{key}.{did_you_mean(key, fields)} "
                f"Settings of {name!r}: {', '.join(sorted(fields))}."
            )
        kwargs[key] = _coerce(fields[key], value, f"{name}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad setting for method {name!r}: {exc}") from exc


def method_settings(pm: GuidedPluginManager, raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every setting of each method of the run, defaults included, as plain data (what
    ``config.toml`` saves, so that a re-run after a plugin changed its defaults keeps the old
    values): each method's ``Config`` built from ``raw`` (its user settings) and turned back into a
    dict. Methods without a ``Config`` are left out."""
    out: dict[str, dict[str, Any]] = {}
    for name in pm.method_order:
        config = build_method_config(name, pm.method_objects[name], raw.get(name, {}))
        if config is not None:
            out[name] = _plain(attrs.asdict(config, recurse=True))
    return out


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: the form a TOML file gives back, so saved and given compare equal."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def instantiate_method(name: str, obj: Any, raw_config: Mapping[str, Any]) -> Any:
    """A method entry point is a class (instantiated with its config) or a module/object (used as is)."""
    config = build_method_config(name, obj, raw_config)
    if inspect.isclass(obj):
        try:
            return obj(config) if config is not None else obj()
        except TypeError as exc:
            raise PluginError(
                f"method plugin class {obj.__module__}.{obj.__qualname__} for {name!r} could not be "
                f"created: {exc}. A method class takes its Config instance (or nothing) in __init__."
            ) from exc
    return obj


class GuidedPluginManager(pluggy.PluginManager):
    """A pluggy manager that knows which plugins are methods and in which order the run named them."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.method_order: list[str] = []
        #: What each method's entry point (or extra plugin) loaded as: its class, module or object.
        self.method_objects: dict[str, Any] = {}
        self.plugin_info: dict[str, PluginInfo | None] = {}
        #: Print every guidance hook call and its result to stderr (``GUIDEDRL_TRACE_PLUGINS=1``).
        self.trace_hooks = os.environ.get(TRACE_ENV, "").lower() not in ("", "0", "false", "no")

    def methods(self) -> dict[str, Any]:
        """Method plugins in the order the run named them."""
        return {name: self.get_plugin(name) for name in self.method_order}


def make_manager(
    methods: Sequence[str] = (),
    method_configs: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    extra_plugins: Mapping[str, Any] | None = None,
) -> GuidedPluginManager:
    """The plugin manager of one run: core defaults plus the named methods, in the order named.

    The first named method wins ``firstresult`` hooks (pluggy calls the last registered first, so
    methods are registered in reverse). ``extra_plugins`` (name → object) are treated like named
    methods that were not installed through entry points, e.g. a user's own hook module; they come
    after the entry-point methods in ``methods`` order only if not already named there.
    """
    method_configs = dict(method_configs or {})
    extra_plugins = dict(extra_plugins or {})
    pm = GuidedPluginManager()
    from guidedrl import default_plugins

    pm.register(default_plugins, name="guidedrl.defaults")
    installed: dict[str, PluginInfo] | None = None
    if len(set(methods)) != len(methods):
        raise ConfigError(f"methods lists a method twice: {list(methods)}; name each once.")
    resolved: list[tuple[str, Any, PluginInfo | None]] = []
    for name in methods:
        if name in extra_plugins:
            resolved.append((name, extra_plugins.pop(name), None))
            continue
        if installed is None:
            installed = discover("methods")
        if name not in installed:
            raise _unknown("method", name, list(installed))
        info = installed[name]
        resolved.append((name, info.load(), info))
    for name, obj in extra_plugins.items():
        resolved.append((name, obj, None))
    unused = set(method_configs) - {n for n, _, _ in resolved}
    if unused:
        raise ConfigError(
            f"settings given for method(s) {sorted(unused)} that the run does not use; add them to "
            f"`methods` or drop their sections. Methods of this run: {[n for n, _, _ in resolved]}."
        )
    for name, obj, info in reversed(resolved):
        plugin = instantiate_method(name, obj, method_configs.get(name, {}))
        try:
            pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:  # registered twice / bad hookimpl
            raise PluginError(f"method {name!r} could not be registered: {exc}") from exc
        pm.plugin_info[name] = info
        pm.method_objects[name] = obj
        if not guidance_hooks_of(plugin):
            declared = _declared_hook_names(plugin)
            warnings.warn(
                f"method plugin {name!r} implements none of the guidance hooks "
                f"({', '.join(hookspecs.GUIDANCE_HOOKS)})"
                + (f"; it declares {declared}" if declared else "")
                + ". Mark implementations with @guidedrl.hookimpl.",
                stacklevel=2,
            )
    pm.method_order = [n for n, _, _ in resolved]
    for hook_name in hookspecs.GUIDANCE_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.wrapper or impl.hookwrapper:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} wraps {hook_name} (wrapper=True); guidance hooks take "
                    "plain implementations only. Drop wrapper=True and return your result."
                )
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {exc.plugin!r} implements a hook guidedrl does not define: {exc}. "
            f"Hooks: {', '.join(hookspecs.GUIDANCE_HOOKS)}.{_misspelt_hint(exc)}"
        ) from exc
    return pm


def _misspelt_hint(exc: pluggy.PluginValidationError) -> str:
    text = str(exc)
    for token in text.replace("'", " ").replace('"', " ").split():
        hint = did_you_mean(token, hookspecs.GUIDANCE_HOOKS, n=1)
        if hint and token not in hookspecs.GUIDANCE_HOOKS:
            return hint
    return ""


@functools.cache
def _registry_manager(kind: str) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from guidedrl import default_plugins

    pm.register(default_plugins, name="guidedrl.defaults")
    for name, info in discover(kind).items():
        obj = info.load()
        key = f"{kind}:{name}"
        if pm.get_plugin(key) is None and not pm.is_registered(obj):
            pm.register(obj, name=key)
    pm.check_pending()
    return pm


def registry_manager(kind: str) -> pluggy.PluginManager:
    """The process-wide manager of one group's registration plugins (``envs`` or ``llms``), loaded
    on first use: a run that never asks an LLM never imports an LLM backend (LangChain integrations
    take a second or more to import)."""
    return _registry_manager(kind)


def reset_registries() -> None:
    """Forget loaded env/LLM registrations (tests that install plugins call this)."""
    _registry_manager.cache_clear()
    from guidedrl import registry

    registry.ENVS.clear()
    registry.LLMS.clear()


# -- the listing of `guidedrl plugins`, without importing plugins when nothing changed -----------
#
# What a plugin registers (env ids, LLM backends, a method's hooks) is only known by importing it,
# and importing e.g. ULTRA pulls torch and Tianshou (seconds). The listing is therefore kept in a
# small JSON file keyed by everything it depends on: each entry point (name, target, distribution,
# version) and the size and mtime of every source file of its package (found with find_spec, which
# does not import), and the core's own files. Hand-written because it is only a dict in a file.


def _package_signature(target: str) -> list[Any]:
    top = target.split(":", 1)[0].split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return [top, None]
    roots = list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
    files = []
    for root in roots:
        if os.path.isfile(root):
            st = os.stat(root)
            files.append([root, st.st_mtime_ns, st.st_size])
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith((".py", ".toml", ".json")):
                    path = os.path.join(dirpath, name)
                    st = os.stat(path)
                    files.append([path, st.st_mtime_ns, st.st_size])
    return [top, files]


def listing_key() -> str:
    """A digest of everything the plugin listing depends on (see above)."""
    from guidedrl import __version__

    parts: list[Any] = [__version__, sys.executable, os.environ.get(ALLOW_ENV), _package_signature("guidedrl")]
    for kind in GROUPS:
        for name, info in sorted(discover(kind).items()):
            parts.append([kind, name, info.value, info.dist, info.version, _package_signature(info.value)])
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def listing_cache_path() -> Path:
    base = os.environ.get("GUIDEDRL_CACHE_DIR") or Path.home() / ".cache" / "guidedrl"
    return Path(base) / "plugins.json"


def cached_listing(compute: Callable[[], dict[str, list[dict[str, Any]]]]) -> dict[str, list[dict[str, Any]]]:
    """``compute()``'s rows, read from the cache file when no plugin changed since it was written.

    A listing in which a plugin failed to import is not kept (installing its missing dependency
    changes no file of the plugin). An unwritable cache directory only costs the speed-up.
    """
    key = listing_key()
    path = listing_cache_path()
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and cached.get("key") == key:
            return cached["rows"]
    except (OSError, ValueError, KeyError):
        pass
    rows = compute()
    if not any("error" in row for group in rows.values() for row in group):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "rows": rows}))
            tmp.replace(path)
        except OSError:
            pass
    return rows

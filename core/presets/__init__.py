"""Hyper-parameter presets per (environment, algorithm), shipped as TOML data.

A preset is one TOML file: a ``[preset]`` table that says which env and algorithm it is for and
where the numbers come from, then ordinary config sections (``[train]``, ``[ppo]``, ...) that are
laid *under* the user's config. Explicit settings (flags, the config file, ``--set``) always win.

Where presets live:

- ``guidedrl/presets/*.toml`` (this folder) for plain Gymnasium ids, which need no adapter
  (``Pendulum-v1`` has none, ``CartPole-v1`` trains without one too);
- ``<adapter package>/presets/*.toml`` in an env adapter distribution (entry-point group
  ``guidedrl.envs``), for the envs it registers. Those folders are found with
  :func:`importlib.util.find_spec`, which locates a package without importing it, so listing
  presets never imports an adapter (or torch).

The file name (without ``.toml``) is the preset's name. ``preset = "auto"`` (the default) picks the
preset whose ``env`` and ``algo`` match the run; ``"none"`` uses the plain defaults; any other value
names a preset. The run's saved ``config.toml`` holds the chosen name and every resolved value, so
it re-runs identically.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from guidedrl.errors import ConfigError, did_you_mean

AUTO = "auto"
NONE = "none"
#: Config sections a preset may set (``llm`` and method settings are the user's business).
PRESET_SECTIONS = ("train", "ppo", "dqn", "sac", "marl", "pretrain")


@attrs.frozen(kw_only=True)
class Preset:
    """One preset file."""

    name: str
    """The file name without ``.toml``; what ``--preset NAME`` and the saved config name."""
    env: str
    """The env id it is for (what ``auto`` matches)."""
    algo: str
    """``ppo``, ``dqn`` or ``sac`` (what ``auto`` matches)."""
    description: str
    """One line: what the preset does and how well (e.g. the budget it solves the env in)."""
    source: str
    """Where the numbers come from (a URL to the published settings, or the search that found them)."""
    settings: dict[str, dict[str, Any]]
    """Config sections laid under the user's config."""
    origin: str
    """The distribution that ships the file (``guidedrl`` for the core's own)."""
    path: Path = attrs.field(eq=False, repr=False)

    def flat(self) -> dict[str, Any]:
        """``{"ppo.lr": 0.001, ...}``: the settings as ``--set`` keys."""
        return {f"{sec}.{key}": value for sec, table in self.settings.items() for key, value in table.items()}


def _read(path: Path, origin: str) -> Preset:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"preset file {str(path)!r} (from {origin}) is not valid TOML: {exc}") from exc
    meta = data.pop("preset", None)
    if not isinstance(meta, Mapping) or not {"env", "algo", "source"} <= set(meta):
        raise ConfigError(
            f"preset file {str(path)!r} (from {origin}) needs a [preset] table with env, algo and source"
        )
    for key, table in data.items():
        if key not in PRESET_SECTIONS or not isinstance(table, Mapping):
            raise ConfigError(
                f"preset file {str(path)!r} (from {origin}) sets {key!r}; a preset holds only the tables "
                f"{', '.join(f'[{s}]' for s in PRESET_SECTIONS)}"
            )
    return Preset(
        name=path.stem,
        env=str(meta["env"]),
        algo=str(meta["algo"]),
        description=str(meta.get("description", "")),
        source=str(meta["source"]),
        settings={k: dict(v) for k, v in data.items()},
        origin=origin,
        path=path,
    )


def _adapter_preset_dirs() -> list[tuple[Path, str]]:
    dirs = []
    seen: set[str] = set()
    for ep in md.entry_points(group="guidedrl.envs"):
        top = ep.value.split(":", 1)[0].split(".", 1)[0]
        if top in seen:
            continue
        seen.add(top)
        try:
            spec = importlib.util.find_spec(top)  # locates the package; does not run its __init__
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location) / "presets"
            if folder.is_dir():
                dirs.append((folder, ep.dist.name if ep.dist is not None else top))
    return dirs


@functools.cache
def available() -> dict[str, Preset]:
    """Every installed preset, by name (the core's first, then each env adapter's)."""
    found: dict[str, Preset] = {}
    for folder, origin in [(Path(__file__).parent, "guidedrl"), *_adapter_preset_dirs()]:
        for path in sorted(folder.glob("*.toml")):
            preset = _read(path, origin)
            if preset.name in found and found[preset.name].path.resolve() != path.resolve():
                other = found[preset.name]
                raise ConfigError(
                    f"preset {preset.name!r} is shipped twice: by {other.origin} ({other.path}) and by "
                    f"{origin} ({path}); rename one of the files"
                )
            found.setdefault(preset.name, preset)
    return found


def for_run(env: str, algo: str) -> Preset | None:
    """The preset ``auto`` picks for (env, algo), if any."""
    matches = [p for p in available().values() if p.env == env and p.algo == algo]
    if len(matches) > 1:
        raise ConfigError(
            f"several presets match env {env!r} and algo {algo!r}: {', '.join(p.name for p in matches)}; "
            "choose one with --preset NAME (or preset = \"NAME\" in the config)"
        )
    return matches[0] if matches else None


def resolve(choice: str, env: str, algo: str) -> Preset | None:
    """The preset a run uses: ``auto`` → the matching one (or none), ``none`` → none, else by name."""
    if choice == NONE:
        return None
    if choice == AUTO:
        return for_run(env, algo)
    presets = available()
    if choice not in presets:
        raise ConfigError(
            f"unknown preset {choice!r}.{did_you_mean(choice, list(presets) + [AUTO, NONE])} "
            f"Presets: {', '.join(sorted(presets)) or 'none installed'} (or 'auto', 'none'); "
            "`guidedrl presets` lists them."
        )
    preset = presets[choice]
    if preset.algo != algo:
        raise ConfigError(
            f"preset {choice!r} is for algo {preset.algo!r}, but the run uses {algo!r}; "
            f"pass --algo {preset.algo} or choose another preset (`guidedrl presets`)"
        )
    return preset


def apply(data: Mapping[str, Any], *, default_env: str, default_algo: str) -> dict[str, Any]:
    """Config data with the chosen preset laid under it and ``preset`` set to the chosen name.

    Every value in ``data`` wins over the preset's; a section that ``data`` gives as something other
    than a table is left for the config validation to report.
    """
    data = dict(data)
    choice = data.get("preset", AUTO)
    if not isinstance(choice, str):
        raise ConfigError(f"preset must be a preset name, 'auto' or 'none', got {choice!r}")
    env, algo = data.get("env", default_env), data.get("algo", default_algo)
    preset = resolve(choice, str(env), str(algo)) if isinstance(env, str) and isinstance(algo, str) else None
    data["preset"] = preset.name if preset is not None else NONE
    if preset is None:
        return data
    for section, values in preset.settings.items():
        given = data.get(section, {})
        if isinstance(given, Mapping):
            data[section] = {**values, **given}
    return data


def header(name: str) -> str:
    """Comment lines for a saved config.toml naming the preset and the values it supplied."""
    preset = available().get(name)
    if preset is None:
        return ""
    lines = [
        f"# preset {preset.name!r} ({preset.origin}): {preset.description}",
        f"# source: {preset.source}",
        "# values from the preset (explicit settings won where they differ): "
        + ", ".join(f"{k}={json.dumps(v)}" for k, v in preset.flat().items()),
    ]
    return "\n".join(lines) + "\n"


__all__ = ["AUTO", "NONE", "Preset", "apply", "available", "for_run", "header", "resolve"]

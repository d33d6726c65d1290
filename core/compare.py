"""Compare runs: a markdown table (mean ± std over seeds), learning curves and, for a sweep over one
numeric setting, the gain over the no-method group against that setting (PNGs)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from guidedrl.errors import GuidedRLError, RunFileError
from guidedrl.records import read_json_file, read_metrics

_IGNORED = {"seed", "out"}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def load_run(run_dir: str | Path) -> dict[str, Any]:
    import tomllib

    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise GuidedRLError(f"{str(run_dir)!r} is not a finished run directory (no summary.json)")
    config = {}
    if (run_dir / "config.toml").exists():
        try:
            config = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise RunFileError(f"{run_dir / 'config.toml'} is damaged ({exc}); restore it or leave this run out") from None
    return {
        "dir": run_dir,
        "summary": read_json_file(summary_path, what="restore it or leave this run out of the comparison"),
        "config": config,
        "metrics": read_metrics(run_dir),
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sort_key(value: Any) -> tuple:
    """Orders setting values: absent first, then numbers by size, then text."""
    if value is None:
        return (0, 0.0, "")
    if _is_number(value):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def _methods_of(flat: dict[str, Any]) -> list[str]:
    methods = flat.get("methods")
    if isinstance(methods, str):
        methods = json.loads(methods)
    return list(methods or [])


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix that tells each key apart (``llm.options.error_rate`` → ``error_rate``)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if not any(o != key and (o == short or o.endswith("." + short)) for o in keys):
                break
        names[key] = short
    return names


def _label_keys(flats: list[dict[str, Any]], varying: list[str]) -> list[str]:
    """The fewest varying settings (greedily) whose values tell every group apart; methods always."""
    chosen: list[str] = []
    candidates = [k for k in varying if k != "methods"]

    def distinct(keys: list[str]) -> int:
        return len({json.dumps([f.get(k) for k in keys], default=str) for f in flats})

    base = ["methods"]
    while distinct(base + chosen) < len(flats) and candidates:
        best = max(candidates, key=lambda k: (distinct(base + chosen + [k]), -len(k)))
        if distinct(base + chosen + [best]) == distinct(base + chosen):
            break
        chosen.append(best)
        candidates.remove(best)
    return chosen


@attrs.frozen
class Group:
    """Runs that differ only in seed, with the settings that tell them from the other groups."""

    label: str
    settings: dict[str, Any]
    """Every setting that differs between groups (dotted name → this group's value, None if absent)."""
    shown: dict[str, Any]
    """The settings named in the label (dotted name → value)."""
    methods: tuple[str, ...]
    runs: list[dict[str, Any]]


def _seed_copies(flats: list[dict[str, Any]], seeds: list[Any]) -> set[str]:
    """Settings that are each run's seed again (a sweep's ``llm.options.seed = "{seed}"``): they vary
    with the seed, so they must not split runs that differ only in seed into groups."""
    keys = set().union(*[set(f) for f in flats]) if flats else set()
    copies = set()
    for key in keys:
        pairs = [(f[key], seed) for f, seed in zip(flats, seeds, strict=True) if key in f]
        if len({json.dumps(v, default=str) for v, _ in pairs}) > 1 and all(
            seed is not None and str(v) == str(seed) for v, seed in pairs
        ):
            copies.add(key)
    return copies


def describe_groups(runs: list[dict[str, Any]]) -> list[Group]:
    """Group runs that differ only in seed; label each group by the fewest settings that tell the
    groups apart (methods first), e.g. ``ultra, error_rate=0.2``; groups sorted by those settings."""
    keyed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    flats: dict[str, dict[str, Any]] = {}
    per_run = [{k: v for k, v in _flatten(run["config"]).items() if k.split(".")[0] not in _IGNORED} for run in runs]
    seed_copies = _seed_copies(per_run, [run["config"].get("seed") for run in runs])
    for run, flat in zip(runs, per_run, strict=True):
        flat = {k: v for k, v in flat.items() if k not in seed_copies}
        key = json.dumps(flat, sort_keys=True, default=str)
        keyed[key].append(run)
        flats[key] = flat
    all_keys = set().union(*[set(f) for f in flats.values()]) if flats else set()
    method_names = {m for f in flats.values() for m in _methods_of(f)}

    def differs(key: str) -> bool:
        # A method's own settings (saved with their defaults) vary only among the groups that run it:
        # that a plain arm has none of them is already said by its methods.
        section = key.split(".")[0]
        among = [f for f in flats.values() if section not in method_names or section in _methods_of(f)]
        return len({json.dumps(f.get(key), default=str) for f in among}) > 1

    varying = sorted(k for k in all_keys if differs(k))
    shown_keys = _label_keys(list(flats.values()), varying)
    short = _short_names(shown_keys)
    groups = []
    for key, members in keyed.items():
        flat = flats[key]
        methods = _methods_of(flat)
        parts = ["+".join(methods) or "no method"]
        parts += [f"{short[k]}={_fmt_value(flat[k])}" for k in shown_keys if flat.get(k) is not None]
        groups.append(
            Group(
                label=", ".join(parts),
                settings={k: flat.get(k) for k in varying},
                shown={k: flat.get(k) for k in shown_keys},
                methods=tuple(methods),
                runs=members,
            )
        )
    groups.sort(key=lambda g: (bool(g.methods), "+".join(g.methods), *[_sort_key(g.shown[k]) for k in shown_keys]))
    seen: dict[str, int] = defaultdict(int)
    for i, g in enumerate(groups):  # labels stay unique even where the settings cannot tell groups apart
        seen[g.label] += 1
        if seen[g.label] > 1:
            groups[i] = attrs.evolve(g, label=f"{g.label} #{seen[g.label]}")
    return groups


def _fmt_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def group_runs(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group runs that differ only in seed; label each group by what differs between groups."""
    return {g.label: g.runs for g in describe_groups(runs)}


def _mean_std(values: Sequence[float]) -> str:
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if vals.size == 0:
        return "n/a"
    return f"{vals.mean():.1f} ± {vals.std():.1f}"


def steps_to_threshold(metrics: list[dict[str, Any]], threshold: float) -> int | None:
    for row in metrics:
        value = row.get("test/return")
        if value is not None and value >= threshold:
            return int(row["env_steps"])
    return None


def compare_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    threshold: float | None = None,
    gain_metric: str = "final_return",
) -> tuple[Path, Path]:
    """Write ``compare.md`` and ``curves.png`` into ``out``; return their paths.

    When exactly one numeric setting varies between the guided groups and there is a no-method
    group, also write ``gain.png``: % gain of ``gain_metric`` over the no-method group against that
    setting, with the value where the gain first falls to zero marked (and a section in ``compare.md``).
    """
    runs = [load_run(d) for d in run_dirs]
    groups = describe_groups(runs)
    if threshold is None:
        threshold = _default_threshold(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = ["run", "seeds", "final return", "best return"]
    if threshold is not None:
        header.append(f"env steps to {threshold:g}")
    header += ["wall s", "LLM calls"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        members = group.runs
        sums = [m["summary"] for m in members]
        row = [group.label, str(len(members)), _mean_std([s.get("final_return") for s in sums]), _mean_std([s.get("best_return") for s in sums])]
        if threshold is not None:
            reached = [steps_to_threshold(m["metrics"], threshold) for m in members]
            hit = [r for r in reached if r is not None]
            row.append(f"{_mean_std(hit)} ({len(hit)}/{len(members)} reached)" if hit else f"not reached (0/{len(members)})")
        row += [_mean_std([s.get("wall_s") for s in sums]), _mean_std([s.get("llm_calls", 0) for s in sums])]
        lines.append("| " + " | ".join(row) + " |")
    hidden = [k for k in (groups[0].settings if groups else {}) if k not in groups[0].shown and k != "methods"]
    if hidden:
        lines += ["", "Other settings that differ between the groups:", "",
                  "| run | " + " | ".join(hidden) + " |", "|" + "---|" * (len(hidden) + 1)]
        for group in groups:
            cells = ["—" if group.settings[k] is None else _fmt_value(group.settings[k]) for k in hidden]
            lines.append(f"| {group.label} | " + " | ".join(cells) + " |")
    envs = sorted({str(r["config"].get("env", "?")) for r in runs})
    gain = gain_vs_setting(groups, metric=gain_metric)
    if gain is not None:
        plot_gain(gain, out / "gain.png", title=", ".join(envs))
        lines += ["", *gain_lines(gain), "", "![gain](gain.png)"]
    else:
        (out / "gain.png").unlink(missing_ok=True)  # not one from an earlier comparison in this directory
    table = "\n".join(lines) + "\n"
    table_path = out / "compare.md"
    table_path.write_text(table)
    png_path = plot_groups({g.label: g.runs for g in groups}, out / "curves.png", title=", ".join(envs))
    return table_path, png_path


def _metric(run: dict[str, Any], metric: str) -> float | None:
    value = run["summary"].get(metric)
    return float(value) if _is_number(value) and np.isfinite(value) else None


def gain_vs_setting(groups: list[Group], *, metric: str = "final_return") -> dict[str, Any] | None:
    """% gain of ``metric`` over the no-method group(s) against the one numeric setting that varies
    between the guided groups; ``None`` when the groups do not have that shape.

    Gain per seed = 100 · (run − baseline mean) / |baseline mean|; the baseline is the no-method
    group, or the no-method group with the same setting value when it varies there too. Each line
    (one per method combination and other shown setting) gets ``breakeven``: the setting value where
    the mean gain first falls to ≤ 0, linearly interpolated between the two tested values around it.
    """
    base = [g for g in groups if not g.methods]
    guided = [g for g in groups if g.methods]
    if not base or not guided:
        return None
    numeric = [
        k for k in guided[0].shown
        if len({json.dumps(g.shown[k]) for g in guided}) > 1 and all(_is_number(g.shown[k]) for g in guided)
    ]
    if len(numeric) != 1:
        return None
    x_key = numeric[0]
    if len(base) == 1:
        baselines = {None: base[0]}
    elif all(_is_number(b.shown.get(x_key)) for b in base) and len({b.shown[x_key] for b in base}) == len(base):
        baselines = {b.shown[x_key]: b for b in base}
    else:
        return None
    lines: dict[str, dict[str, Any]] = {}
    for g in guided:
        x = g.shown[x_key]
        b = baselines.get(None, baselines.get(x))
        if b is None:
            continue
        b_vals = [v for v in (_metric(r, metric) for r in b.runs) if v is not None]
        vals = [v for v in (_metric(r, metric) for r in g.runs) if v is not None]
        if not b_vals or not vals or np.mean(b_vals) == 0:
            continue
        b_mean = float(np.mean(b_vals))
        gains = [100.0 * (v - b_mean) / abs(b_mean) for v in vals]
        name = ", ".join(["+".join(g.methods)] + [f"{k.rsplit('.', 1)[-1]}={_fmt_value(v)}" for k, v in g.shown.items()
                                                  if k != x_key and v is not None])
        line = lines.setdefault(name, {"x": [], "mean": [], "std": [], "n": [], "baseline": []})
        line["x"].append(float(x))
        line["mean"].append(float(np.mean(gains)))
        line["std"].append(float(np.std(gains)))
        line["n"].append(len(gains))
        line["baseline"].append(b_mean)
    if not lines:
        return None
    for line in lines.values():
        order = np.argsort(line["x"])
        for k in ("x", "mean", "std", "n", "baseline"):
            line[k] = [line[k][i] for i in order]
        line["breakeven"] = _breakeven(line["x"], line["mean"])
    return {"setting": x_key, "metric": metric, "lines": lines}


def _breakeven(xs: list[float], gains: list[float]) -> float | None:
    """First x where the gain falls to ≤ 0 (interpolated); ``None`` if it stays > 0 (or never was)."""
    for i, g in enumerate(gains):
        if g <= 0:
            if i == 0:
                return xs[0]
            x0, x1, g0 = xs[i - 1], xs[i], gains[i - 1]
            return x0 + (x1 - x0) * g0 / (g0 - g)
    return None


def gain_lines(gain: dict[str, Any]) -> list[str]:
    """The gain-vs-setting section of ``compare.md``."""
    setting, metric = gain["setting"], gain["metric"].replace("_", " ")
    out = [f"Gain in {metric} over the no-method group, by `{setting}` (mean ± std over seeds):", "",
           f"| method | {setting} | gain % | seeds | no-method {metric} |", "|---|---|---|---|---|"]
    notes = []
    for name, line in gain["lines"].items():
        for x, m, s, n, b in zip(line["x"], line["mean"], line["std"], line["n"], line["baseline"], strict=True):
            out.append(f"| {name} | {x:g} | {m:+.1f} ± {s:.1f} | {n} | {b:.1f} |")
        be = line["breakeven"]
        if be is None:
            notes.append(f"{name}: guidance pays over the whole tested range ({line['x'][0]:g}–{line['x'][-1]:g}).")
        elif be == line["x"][0] and line["mean"][0] <= 0:
            notes.append(f"{name}: guidance does not pay even at {setting} = {be:g}.")
        else:
            notes.append(f"{name}: guidance stops paying at {setting} ≈ {be:.3g}.")
    return out + [""] + notes


def plot_gain(gain: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """% gain over the no-method group against the varying setting, ± std, break-even marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    for name, line in gain["lines"].items():
        x, m, s = np.array(line["x"]), np.array(line["mean"]), np.array(line["std"])
        (ln,) = ax.plot(x, m, marker="o", label=name)
        ax.fill_between(x, m - s, m + s, alpha=0.2, color=ln.get_color())
        be = line["breakeven"]
        if be is not None:
            ax.axvline(be, ls="--", color=ln.get_color(), alpha=0.8, label=f"{name}: stops paying at {be:.3g}")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel(gain["setting"])
    ax.set_ylabel(f"% gain in {gain['metric'].replace('_', ' ')} over no method")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _default_threshold(runs: list[dict[str, Any]]) -> float | None:
    import gymnasium as gym

    envs = {r["config"].get("env") for r in runs}
    if len(envs) != 1:
        return None
    env = envs.pop()
    try:
        spec = gym.spec(env)
    except Exception:  # not a Gymnasium id (e.g. a PettingZoo adapter)
        return None
    return spec.reward_threshold


def plot_groups(groups: dict[str, list[dict[str, Any]]], path: str | Path, title: str | None = None) -> Path:
    """Mean test return against env steps per group, with a ±std band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    for label, members in groups.items():
        curves = []
        for m in members:
            rows = [r for r in m["metrics"] if r.get("test/return") is not None]
            if rows:
                curves.append((np.array([r["env_steps"] for r in rows]), np.array([r["test/return"] for r in rows])))
        if not curves:
            continue
        grid = np.unique(np.concatenate([c[0] for c in curves]))
        ys = np.array([np.interp(grid, x, y) for x, y in curves])
        mean, std = ys.mean(0), ys.std(0)
        (line,) = ax.plot(grid, mean, label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.set_xlabel("env steps")
    ax.set_ylabel("test return")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside, not over, the curves
    path = Path(path)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_runs(run_dirs: Sequence[str | Path], path: str | Path, title: str | None = None) -> Path:
    runs = [{"dir": Path(d), "config": {}, "metrics": read_metrics(d)} for d in run_dirs]
    return plot_groups({Path(r["dir"]).name: [r] for r in runs}, path, title=title)

"""Compare runs: a markdown table (mean ± std over seeds) and learning curves (PNG)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def group_runs(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group runs that differ only in seed; label each group by what differs between groups."""
    keyed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    flats: dict[str, dict[str, Any]] = {}
    for run in runs:
        flat = {k: v for k, v in _flatten(run["config"]).items() if k.split(".")[0] not in _IGNORED}
        key = json.dumps(flat, sort_keys=True, default=str)
        keyed[key].append(run)
        flats[key] = flat
    all_keys = set().union(*[set(f) for f in flats.values()]) if flats else set()
    varying = sorted(k for k in all_keys if len({json.dumps(f.get(k), default=str) for f in flats.values()}) > 1)
    groups: dict[str, list[dict[str, Any]]] = {}
    for key, members in keyed.items():
        flat = flats[key]
        methods = json.loads(flat.get("methods", "[]")) if isinstance(flat.get("methods"), str) else flat.get("methods") or []
        parts = ["+".join(methods) or "no method"]
        parts += [f"{k}={flat.get(k)}" for k in varying if k != "methods" and k in flat]
        groups[", ".join(parts)] = members
    return groups


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
    run_dirs: Sequence[str | Path], out: str | Path, *, threshold: float | None = None
) -> tuple[Path, Path]:
    """Write ``compare.md`` and ``curves.png`` into ``out``; return their paths."""
    runs = [load_run(d) for d in run_dirs]
    groups = group_runs(runs)
    if threshold is None:
        threshold = _default_threshold(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = ["run", "seeds", "final return", "best return"]
    if threshold is not None:
        header.append(f"env steps to {threshold:g}")
    header += ["wall s", "LLM calls"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, members in groups.items():
        sums = [m["summary"] for m in members]
        row = [label, str(len(members)), _mean_std([s.get("final_return") for s in sums]), _mean_std([s.get("best_return") for s in sums])]
        if threshold is not None:
            reached = [steps_to_threshold(m["metrics"], threshold) for m in members]
            hit = [r for r in reached if r is not None]
            row.append(f"{_mean_std(hit)} ({len(hit)}/{len(members)} reached)" if hit else f"not reached (0/{len(members)})")
        row += [_mean_std([s.get("wall_s") for s in sums]), _mean_std([s.get("llm_calls", 0) for s in sums])]
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines) + "\n"
    table_path = out / "compare.md"
    table_path.write_text(table)
    envs = sorted({str(r["config"].get("env", "?")) for r in runs})
    png_path = plot_groups(groups, out / "curves.png", title=", ".join(envs))
    return table_path, png_path


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

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
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
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_runs(run_dirs: Sequence[str | Path], path: str | Path, title: str | None = None) -> Path:
    runs = [{"dir": Path(d), "config": {}, "metrics": read_metrics(d)} for d in run_dirs]
    return plot_groups({Path(r["dir"]).name: [r] for r in runs}, path, title=title)

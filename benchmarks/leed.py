"""LEED vs IPPO vs MAPPO as the number of agents grows: the traffic twin (and MPE simple_spread).

    .venv/bin/python benchmarks/leed.py            # full: traffic N = 4, 8, 16, 32 and simple_spread N = 3, 6, 9,
                                                   # 3 seeds, 40,960 online steps per run (hours on 2 CPU cores)
    .venv/bin/python benchmarks/leed.py --reduced  # what was run for the committed results (see README there)

Arms, the same online step budget and seeds for each:

- ``ippo``: independent PPO (``marl.share_parameters = false``, ``marl.centralized_critic = false``), no demos;
- ``mappo``: shared actor + centralised critic (the runner's defaults), no demos;
- ``leed``: IPPO + LEED (simulated LLM, exact expert answers);
- ``leed_err20``: the same with a 20%-wrong LLM (``llm.options.error_rate = 0.2``).

Reported per env and N: final test return as % of the expert (normalised, random = 0 %, expert = 100 %,
because the traffic returns are negative for large N), online steps and wall seconds until the test
return first reaches 66 % of the expert, LLM calls, and LEED's demonstration validity and demo return
before (round 0) and after refinement (the kept set). Results: ``benchmarks/results/leed/``
(``results.json``, ``README.md``, ``curves.png``, ``scaling.png``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "leed"
TARGET = 0.66
ARMS = ("ippo", "mappo", "leed", "leed_err20")
IPPO = {"share_parameters": False, "centralized_critic": False}


def env_of(family: str, n: int) -> tuple[str, dict]:
    if family == "traffic":
        return "traffic:grid4x4-v0", {"n_vehicles": n}
    return "mpe2:simple_spread-v3", {"N": n}


def config(family: str, n: int, arm: str, *, seed: int, steps: int, out: Path, test_episodes: int) -> dict:
    env, kwargs = env_of(family, n)
    collect = max(1024, steps // 8)
    cfg: dict = {
        # preset "none": these settings predate the MPE MAPPO preset; pinned so the committed results reproduce
        "env": env, "env_kwargs": kwargs, "steps": steps, "seed": seed, "methods": [], "out": str(out), "preset": "none",
        "train": {"num_envs": 4, "epoch_steps": collect * 2, "test_episodes": test_episodes,
                  "num_test_envs": min(4, test_episodes), "checkpoint": False},
        "marl": {"steps_per_collect": collect, "batch_size": 512, "repeat": 4, "lr": 5e-4},
        "llm": {"backend": "simulated", "cache": "off", "options": {"seed": seed}},
    }
    if arm != "mappo":
        cfg["marl"].update(IPPO)
    if arm.startswith("leed"):
        cfg["methods"] = ["leed"]
        cfg["leed"] = {"episodes": 32, "refine_every": 2, "max_refinements": 2, "decay_steps": float(steps)}
    if arm == "leed_err20":
        cfg["llm"]["options"]["error_rate"] = 0.2
    return cfg


def run(cfg: dict) -> dict:
    """One training run in this process; returns the summary, metrics rows and LEED's rounds."""
    import torch

    torch.set_num_threads(1)
    from guidedrl.config import from_dict
    from guidedrl.records import read_metrics
    from guidedrl.train import train

    out = Path(cfg["out"])
    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    result = train(from_dict(cfg))
    rounds = out / "leed_rounds.json"
    return {
        "summary": {k: v for k, v in result.summary.items() if k not in ("segments",)},
        "rows": read_metrics(result.run_dir),
        "rounds": json.loads(rounds.read_text()) if rounds.exists() else [],
        "total_wall_s": time.time() - t0,
    }


def reference(family: str, n: int, *, seed: int, episodes: int, policy: str) -> float:
    """Mean team return of the expert (or uniform random actions) on the runner's test episodes."""
    from guidedrl.registry import make_adapter
    from guidedrl.train.loop import test_seed_of

    env_id, kwargs = env_of(family, n)
    adapter = make_adapter(env_id, **kwargs)
    rng = np.random.default_rng(seed)
    rets = []
    for k in range(episodes):
        e = adapter.make()
        obs, infos = e.reset(seed=test_seed_of(seed) + k)
        total = 0.0
        while e.agents:
            if policy == "expert":
                acts = adapter.expert.act(adapter.describe(obs, infos).state)
                acts = {a: acts[a] for a in e.agents}
            else:
                acts = {a: int(rng.integers(e.action_space(a).n)) for a in e.agents}
            obs, rew, _, _, infos = e.step(acts)
            total += float(sum(rew.values()))
        rets.append(total)
        e.close()
    return float(np.mean(rets))


def pct(ret: float, ref: dict) -> float:
    span = ref["expert"] - ref["random"]
    return 100.0 * (ret - ref["random"]) / span if abs(span) > 1e-9 else float("nan")


def reach(rows: list[dict], ref: dict) -> dict:
    """First evaluation at >= 66 % of the expert (normalised): online steps and seconds."""
    for row in rows:
        r = row.get("test/return")
        if r is not None and pct(r, ref) >= 100 * TARGET:
            return {"steps": row["env_steps"], "online_s": row.get("time/online_s", 0.0)}
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reduced", action="store_true", help="traffic N = 4, 8, 16; 2 seeds; 8,192 steps (~15 min)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/guidedrl-leed-bench"))
    ap.add_argument("--grid", default=None, help="cells to run instead, e.g. traffic:32,mpe:3,mpe:6 (with --reduced: its seeds/steps)")
    args = ap.parse_args()
    if args.reduced:
        grid, seeds, steps, test_eps = [("traffic", n) for n in (4, 8, 16)], [0, 1], 8192, 4
    else:
        grid = [("traffic", n) for n in (4, 8, 16, 32)] + [("mpe", n) for n in (3, 6, 9)]
        seeds, steps, test_eps = [0, 1, 2], 40_960, 8
    if args.grid:
        cells = [c.strip().split(":") for c in args.grid.split(",") if c.strip()]
        bad = [":".join(c) for c in cells if len(c) != 2 or c[0] not in ("traffic", "mpe") or not c[1].isdigit()]
        if bad:
            ap.error(f"--grid cells are family:N with family traffic or mpe, got {bad}")
        grid = [(f, int(n)) for f, n in cells]
    t0 = time.time()
    results: dict = {"settings": {"reduced": args.reduced, "seeds": seeds, "steps": steps, "test_episodes": test_eps,
                                  "grid": [f"{f}:{n}" for f, n in grid], "arms": list(ARMS),
                                  "example_config": config("traffic", 8, "leed", seed=0, steps=steps, out=Path("RUN"), test_episodes=test_eps)},
                     "cells": {}}
    for family, n in grid:
        key = f"{family}:{n}"
        cell = results["cells"][key] = {"refs": {}, "runs": {arm: {} for arm in ARMS}}
        for seed in seeds:
            ref = {p: reference(family, n, seed=seed, episodes=test_eps, policy=p) for p in ("expert", "random")}
            cell["refs"][seed] = ref
            for arm in ARMS:
                r = run(config(family, n, arm, seed=seed, steps=steps, out=args.runs / f"{family}{n}_{arm}_{seed}", test_episodes=test_eps))
                s = r["summary"]
                mc = s.get("method_counters", {}).get("leed", {})
                cell["runs"][arm][seed] = {
                    "final_return": s["final_return"], "final_pct": pct(s["final_return"], ref),
                    "reach66": reach(r["rows"], ref), "wall_s": r["total_wall_s"], "online_s": s.get("online_s"),
                    "llm_calls": s.get("llm_calls", 0), "rounds": r["rounds"],
                    "validity_first": mc.get("validity_first"), "validity_last": mc.get("validity_last"),
                    "demo_return_first": mc.get("demo_return_first"), "demo_return_last": mc.get("demo_return_last"),
                    "curve": [(row["env_steps"], pct(row["test/return"], ref)) for row in r["rows"] if row.get("test/return") is not None],
                }
                print(f"[{time.time() - t0:6.0f}s] {key} seed {seed} {arm}: final {s['final_return']:.2f} "
                      f"({cell['runs'][arm][seed]['final_pct']:.0f}% of expert {ref['expert']:.2f}, random {ref['random']:.2f})",
                      flush=True)
    results["wall_s"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    report(results, args.out, " ".join(["benchmarks/leed.py", *sys.argv[1:]]))
    plot(results, args.out)


def _ms(xs: list) -> str:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    if not xs:
        return "–"
    return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def report(results: dict, out: Path, command: str) -> None:
    st = results["settings"]
    lines = [
        "# LEED: scaling in the number of agents (`benchmarks/leed.py`)", "",
        f"Run: `{command}` — {'REDUCED' if st['reduced'] else 'full'} configuration: {', '.join(st['grid'])}; "
        f"seeds {st['seeds']}; {st['steps']:,} online joint env steps per run; {st['test_episodes']} test episodes per "
        f"evaluation; total {results['wall_s'] / 60:.1f} min on a shared 2-core CPU, one run at a time.", "",
        "% of expert = (return − random) / (expert − random) · 100 on the runner's test episodes (the traffic "
        "returns are negative for large N, so a plain ratio would mislead). mean ± std over seeds.", "",
        "| env:N | arm | final % of expert | steps to 66 % | online s to 66 % | reached | wall s | LLM calls | validity first → kept | demo return first → kept |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, cell in results["cells"].items():
        for arm, runs in cell["runs"].items():
            rs = list(runs.values())
            reached = [r["reach66"] for r in rs if r["reach66"]]
            val = "–" if not arm.startswith("leed") else f"{_ms([r['validity_first'] for r in rs])} → {_ms([r['validity_last'] for r in rs])}"
            dr = "–" if not arm.startswith("leed") else f"{_ms([r['demo_return_first'] for r in rs])} → {_ms([r['demo_return_last'] for r in rs])}"
            lines.append(
                f"| {key} | {arm} | {_ms([r['final_pct'] for r in rs])} | {_ms([x['steps'] for x in reached])} | "
                f"{_ms([x['online_s'] for x in reached])} | {len(reached)}/{len(rs)} | {_ms([r['wall_s'] for r in rs])} | "
                f"{_ms([r['llm_calls'] for r in rs])} | {val} | {dr} |"
            )
    lines += ["", "References (team return on the test episodes, mean over seeds):", ""]
    for key, cell in results["cells"].items():
        refs = list(cell["refs"].values())
        lines.append(f"- {key}: expert {np.mean([r['expert'] for r in refs]):.2f}, random {np.mean([r['random'] for r in refs]):.2f}")
    lines += ["", "Plots: `curves.png` (test % of expert vs online steps), `scaling.png` (final % of expert vs N).", ""]
    (out / "README.md").write_text("\n".join(lines))


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = results["cells"]
    fig, axes = plt.subplots(1, len(cells), figsize=(4 * len(cells), 3.2), squeeze=False)
    for ax, (key, cell) in zip(axes[0], cells.items()):
        for arm, runs in cell["runs"].items():
            curves = [np.asarray(r["curve"], dtype=float) for r in runs.values() if r["curve"]]
            if not curves:
                continue
            m = min(len(c) for c in curves)
            xs = curves[0][:m, 0]
            ys = np.stack([c[:m, 1] for c in curves])
            ax.plot(xs, ys.mean(0), label=arm)
            ax.fill_between(xs, ys.min(0), ys.max(0), alpha=0.15)
        ax.axhline(100 * TARGET, color="grey", lw=0.8, ls="--")
        ax.set_title(key)
        ax.set_xlabel("online env steps")
    axes[0][0].set_ylabel("test return, % of expert")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for family in sorted({k.split(":")[0] for k in cells}):
        keys = [k for k in cells if k.startswith(family + ":")]
        ns = [int(k.split(":")[1]) for k in keys]
        for arm in ARMS:
            ys = [np.mean([r["final_pct"] for r in cells[k]["runs"][arm].values()]) for k in keys]
            es = [np.std([r["final_pct"] for r in cells[k]["runs"][arm].values()]) for k in keys]
            ax.errorbar(ns, ys, yerr=es, marker="o", capsize=3, label=f"{family} {arm}")
    ax.set_xlabel("agents N")
    ax.set_ylabel("final test return, % of expert")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

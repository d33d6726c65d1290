"""LCIL vs multi-agent PPO from scratch on the factory digital twins, and cross-domain transfer.

    .venv/bin/python benchmarks/lcil.py            # full: 3 seeds, ~20 min on 2 idle CPU cores
    .venv/bin/python benchmarks/lcil.py --quick    # 1 seed, small budgets, ~5 min

For human-machine and maintenance, per seed: the expert coordinator's return on the test episodes
(the "optimal" reference), MAPPO from scratch, and LCIL (simulated LLM with a 10% wrong-plan and 5%
malformed-answer rate). Reported: online wall time and online episodes until the test return first
reaches 66% of the expert's, and the final % of the expert. Then the policies trained on
human-machine run zero-shot on warehouse and manufacturing (task completion = jobs done / jobs
arrived), and again after a small MAPPO fine-tune there. Results: ``benchmarks/results/lcil/``
(``results.json``, ``README.md``, ``curves.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "lcil"
TARGET = 0.66
PAPER = {
    "online_time_reduction": "up to 96%",
    "episodes_to_66pct": "4% of standard RL's episodes",
    "zero_shot_completion": "30-40%",
    "after_finetune": "up to 99.7%",
}


def base_config(env: str, *, seed: int, steps: int, out: Path, methods=(), extra=None) -> dict:
    """A run of the benchmark; its MAPPO settings are the factory floors' preset (``preset = "auto"``,
    as in ``benchmarks/lcil.toml``)."""
    cfg = {
        "env": env,
        "steps": steps,
        "seed": seed,
        "methods": list(methods),
        "out": str(out),
        "train": {"num_envs": 8, "epoch_steps": 5120, "test_episodes": 8, "num_test_envs": 8, "checkpoint": True},
        "llm": {"backend": "simulated", "cache": "off", "options": {"error_rate": 0.1, "invalid_rate": 0.05, "seed": seed}},
    }
    for k, v in (extra or {}).items():
        if isinstance(v, dict):
            cfg.setdefault(k, {}).update(v)
        else:
            cfg[k] = v
    return cfg


def run(cfg: dict) -> dict:
    """One training run in this process (``guidedrl.train.train``); returns summary + metrics rows."""
    import torch

    torch.set_num_threads(1)
    from guidedrl.config import from_dict
    from guidedrl.records import read_metrics
    from guidedrl.train import train

    out = Path(cfg["out"])
    if (out / "summary.json").exists() and (out / "checkpoint.pt").exists():  # finished earlier: reuse
        summary = json.loads((out / "summary.json").read_text())
        if summary.get("status") == "finished":
            return {"summary": summary, "rows": read_metrics(out), "run_dir": str(out)}
    if out.exists():
        import shutil

        shutil.rmtree(out)
    t0 = time.time()
    result = train(from_dict(cfg))
    summary = dict(result.summary)
    summary["total_wall_s"] = time.time() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return {"summary": summary, "rows": read_metrics(result.run_dir), "run_dir": str(result.run_dir)}


def expert_reference(env: str, *, seed: int, episodes: int) -> dict:
    """The expert coordinator on the runner's test episodes of ``seed`` (same reset seeds)."""
    from guidedrl.registry import make_adapter

    adapter = make_adapter(env)
    rets, comp = [], []
    for k in range(episodes):
        e = adapter.make()
        obs, infos = e.reset(seed=10_000 + 1000 * seed + k)
        total = 0.0
        while e.agents:
            obs, rew, _, _, infos = e.step(adapter.expert.act(adapter.describe(obs).state))
            total += sum(rew.values())
        rets.append(total)
        comp.append(adapter.task_completion(infos))
    return {"return": float(np.mean(rets)), "task_completion": float(np.mean(comp))}


def random_reference(env: str, *, seed: int, episodes: int) -> dict:
    from guidedrl.registry import make_adapter

    adapter = make_adapter(env)
    rng = np.random.default_rng(seed)
    rets, comp = [], []
    for k in range(episodes):
        e = adapter.make()
        obs, infos = e.reset(seed=10_000 + 1000 * seed + k)
        total = 0.0
        while e.agents:
            obs, rew, _, _, infos = e.step({a: int(rng.integers(e.action_space(a).n)) for a in e.agents})
            total += sum(rew.values())
        rets.append(total)
        comp.append(adapter.task_completion(infos))
    return {"return": float(np.mean(rets)), "task_completion": float(np.mean(comp))}


def reach(rows: list[dict], threshold: float) -> dict:
    """First metrics row whose test return reaches ``threshold``: online steps, episodes, seconds."""
    for row in rows:
        if row.get("test/return") is not None and row["test/return"] >= threshold:
            return {
                "steps": row["env_steps"],
                "episodes": row.get("train/episodes", 0),
                "online_s": row.get("time/online_s", 0.0),
            }
    return {}


def zero_shot(run_dir: str, target_env: str, *, seed: int, episodes: int) -> dict:
    """Evaluate the networks of ``run_dir`` on another domain with the same agent interface."""
    from guidedrl.evaluate import evaluate_run

    res = evaluate_run(Path(run_dir), episodes=episodes, seed=10_000 + 1000 * seed, env=target_env)
    return {"return": res["mean_return"], "task_completion": res["mean_task_completion"]}


def job(spec: dict) -> dict:
    kind = spec["kind"]
    if kind == "train":
        return run(spec["cfg"])
    if kind == "expert":
        return expert_reference(spec["env"], seed=spec["seed"], episodes=spec["episodes"])
    if kind == "random":
        return random_reference(spec["env"], seed=spec["seed"], episodes=spec["episodes"])
    if kind == "zero_shot":
        return zero_shot(spec["run_dir"], spec["env"], seed=spec["seed"], episodes=spec["episodes"])
    raise ValueError(kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 seed, small budgets (a few minutes)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    from joblib import Parallel, delayed

    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    ppo_steps = 20_480 if args.quick else 40_960
    lcil_steps = 10_240
    demo_eps = 5 if args.quick else 10
    ft_steps = 5_120
    target_demo_eps = 5
    test_eps = 8
    out = Path(args.out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    domains = ["human-machine", "maintenance"]
    transfer_to = ["warehouse", "manufacturing"]
    t_start = time.time()
    par = Parallel(n_jobs=args.jobs, verbose=0)

    # 1. references and training runs
    specs, keys = [], []
    for dom in domains + transfer_to:
        for s in seeds:
            env = f"factory:{dom}-v0"
            specs += [{"kind": "expert", "env": env, "seed": s, "episodes": test_eps},
                      {"kind": "random", "env": env, "seed": s, "episodes": test_eps}]
            keys += [("expert", dom, s), ("random", dom, s)]
    for dom in domains:
        for s in seeds:
            env = f"factory:{dom}-v0"
            specs.append({"kind": "train", "cfg": base_config(env, seed=s, steps=ppo_steps, out=runs / f"ppo_{dom}_{s}")})
            keys.append(("ppo", dom, s))
            specs.append({"kind": "train", "cfg": base_config(
                env, seed=s, steps=lcil_steps, out=runs / f"lcil_{dom}_{s}", methods=["lcil"],
                extra={"lcil": {"episodes": demo_eps}})})
            keys.append(("lcil", dom, s))
    results = dict(zip(keys, par(delayed(job)(sp) for sp in specs), strict=True))
    print(f"[lcil bench] training done in {time.time() - t_start:.0f}s", flush=True)

    # 2. zero-shot transfer from human-machine, then a small fine-tune on the target domain
    specs, keys = [], []
    for method in ("lcil", "ppo"):
        for s in seeds:
            src = results[(method, "human-machine", s)]["run_dir"]
            for dom in transfer_to:
                env = f"factory:{dom}-v0"
                specs.append({"kind": "zero_shot", "run_dir": src, "env": env, "seed": s, "episodes": test_eps})
                keys.append(("zero_shot", method, dom, s))
                specs.append({"kind": "train", "cfg": base_config(
                    env, seed=s, steps=ft_steps, out=runs / f"ft_{method}_{dom}_{s}", extra={"train": {"init_from": src}})})
                keys.append(("finetune", method, dom, s))
                if method == "lcil":  # phase 3: LLM demonstrations on the target floor, then the same fine-tune
                    specs.append({"kind": "train", "cfg": base_config(
                        env, seed=s, steps=ft_steps, out=runs / f"ft3_{method}_{dom}_{s}", methods=["lcil"],
                        extra={"train": {"init_from": src}, "lcil": {"episodes": target_demo_eps}})})
                    keys.append(("finetune_demos", method, dom, s))
    results.update(dict(zip(keys, par(delayed(job)(sp) for sp in specs), strict=True)))
    wall = time.time() - t_start
    report(results, seeds=seeds, domains=domains, transfer_to=transfer_to, out=out, wall=wall,
           budgets={"ppo_steps": ppo_steps, "lcil_steps": lcil_steps, "demo_episodes": demo_eps,
                    "finetune_steps": ft_steps, "test_episodes": test_eps, "quick": args.quick,
                    "target_demo_episodes": target_demo_eps})


def _ms(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def report(results: dict, *, seeds, domains, transfer_to, out: Path, wall: float, budgets: dict) -> None:
    table = {"budgets": budgets, "wall_s": wall, "domains": {}, "transfer": {}}
    lines = [
        "# LCIL vs multi-agent PPO from scratch (factory digital twins)",
        "",
        f"Generated by `benchmarks/lcil.py{' --quick' if budgets['quick'] else ''}` in {wall / 60:.1f} min on "
        f"{os.cpu_count()} CPU cores; seeds {seeds}. Budgets: PPO {budgets['ppo_steps']} online joint steps, "
        f"LCIL {budgets['demo_episodes']} LLM-coordinated demonstration episodes + {budgets['lcil_steps']} online "
        f"steps; {budgets['test_episodes']} test episodes per evaluation. LLM: `simulated` (expert coordinator "
        "behind the text interface, 10% wrong plans, 5% malformed answers). Return = team return (sum over "
        "agents). 'Expert' = the rule-based coordinator (the reference for % of optimal).",
        "",
        f"## Reaching {int(TARGET * 100)}% of the expert's return",
        "",
        "| domain | method | final return | final % of expert | best % of expert | online episodes to 66% | online time to 66% (s) | seeds reaching 66% | demo episodes | LLM calls |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dom in domains:
        exp = [results[("expert", dom, s)]["return"] for s in seeds]
        rnd = [results[("random", dom, s)]["return"] for s in seeds]
        table["domains"][dom] = {"expert_return": exp, "random_return": rnd, "methods": {}}
        for method in ("ppo", "lcil"):
            fin, best, eps, secs, reached, calls = [], [], [], [], 0, []
            for s, e in zip(seeds, exp, strict=True):
                r = results[(method, dom, s)]
                fin.append(100 * r["summary"]["final_return"] / e)
                best.append(100 * r["summary"]["best_return"] / e)
                hit = reach(r["rows"], TARGET * e)
                calls.append(r["summary"].get("llm_calls", 0))
                if hit:
                    reached += 1
                    eps.append(hit["episodes"])
                    secs.append(hit["online_s"])
            table["domains"][dom]["methods"][method] = {
                "final_pct": fin, "best_pct": best, "episodes_to_66": eps, "online_s_to_66": secs,
                "reached": reached, "llm_calls": calls,
                "final_return": [results[(method, dom, s)]["summary"]["final_return"] for s in seeds],
            }
            name = "MAPPO from scratch" if method == "ppo" else "LCIL"
            demo = budgets["demo_episodes"] if method == "lcil" else 0
            lines.append(
                f"| {dom} | {name} | {_ms(table['domains'][dom]['methods'][method]['final_return'])} | {_ms(fin)} | {_ms(best)} | "
                f"{_ms(eps)} | {_ms(secs)} | {reached}/{len(seeds)} | {demo} | {_ms(calls)} |"
            )
        lines.append(f"| {dom} | expert coordinator | {_ms(exp)} | 100 | 100 | | | | | |")
        lines.append(f"| {dom} | uniform random | {_ms(rnd)} | {_ms([100 * a / b for a, b in zip(rnd, exp, strict=True)])} | | | | | | |")
    lines += [
        "",
        "## Zero-shot transfer from human-machine, then a small fine-tune",
        "",
        f"Task completion = jobs done / jobs arrived, on the target domain's test episodes. Fine-tune: "
        f"{budgets['finetune_steps']} MAPPO steps on the target domain from the transferred networks (`train.init_from`).",
        "",
        "| target | policy from | zero-shot completion % | % of expert's completion | after fine-tune % | % of expert's | expert % | random % |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def completion(key: tuple) -> float:
        return 100 * results[key]["summary"].get("final_task_completion", float("nan"))

    for dom in transfer_to:
        ec = [100 * results[("expert", dom, s)]["task_completion"] for s in seeds]
        rc = [100 * results[("random", dom, s)]["task_completion"] for s in seeds]
        for method in ("lcil", "ppo"):
            zs = [100 * results[("zero_shot", method, dom, s)]["task_completion"] for s in seeds]
            ft = [completion(("finetune", method, dom, s)) for s in seeds]
            table["transfer"][f"{method}->{dom}"] = {"zero_shot": zs, "finetune": ft, "expert": ec, "random": rc}
            lines.append(
                f"| {dom} | {'LCIL' if method == 'lcil' else 'MAPPO'} (human-machine) | {_ms(zs)} | "
                f"{_ms([100 * a / b for a, b in zip(zs, ec, strict=True)])} | {_ms(ft)} | "
                f"{_ms([100 * a / b for a, b in zip(ft, ec, strict=True)])} | {_ms(ec)} | {_ms(rc)} |"
            )
    phase3 = [dom for dom in transfer_to if all(("finetune_demos", "lcil", dom, s) in results for s in seeds)]
    if phase3:
        lines += [
            "",
            "### Phase 3 on the target floor: LLM demonstrations there, then the same fine-tune",
            "",
            f"From the LCIL human-machine policy: {budgets.get('target_demo_episodes', '?')} LLM-coordinated "
            f"demonstration episodes on the target floor (behaviour cloning), then {budgets['finetune_steps']} "
            "MAPPO steps there (the paper's third phase).",
            "",
            "| target | task completion % | % of expert's | LLM calls | expert % |",
            "|---|---|---|---|---|",
        ]
        for dom in phase3:
            ec = [100 * results[("expert", dom, s)]["task_completion"] for s in seeds]
            p3 = [completion(("finetune_demos", "lcil", dom, s)) for s in seeds]
            calls = [results[("finetune_demos", "lcil", dom, s)]["summary"].get("llm_calls", 0) for s in seeds]
            table["transfer"][f"lcil->{dom}"]["finetune_with_target_demos"] = p3
            lines.append(f"| {dom} | {_ms(p3)} | {_ms([100 * a / b for a, b in zip(p3, ec, strict=True)])} | "
                         f"{_ms(calls)} | {_ms(ec)} |")
    long_lines = _long_baseline(results, table, seeds=seeds, domains=domains, budgets=budgets)
    ppo_t = [x for d in domains for x in table["domains"][d]["methods"]["ppo"]["online_s_to_66"]]
    lcil_t = [x for d in domains for x in table["domains"][d]["methods"]["lcil"]["online_s_to_66"]]
    ppo_e = [x for d in domains for x in table["domains"][d]["methods"]["ppo"]["episodes_to_66"]]
    lcil_e = [x for d in domains for x in table["domains"][d]["methods"]["lcil"]["episodes_to_66"]]
    lines += ["", "## Beside the paper", "", "| claim (Fan et al.) | paper | measured here |", "|---|---|---|"]
    long_ratios = [v["ratios"] for v in table.get("long_baseline", {}).values() if "ratios" in v]
    if long_ratios:
        n_long = len(table["long_baseline"])
        lines.append(
            f"| online training time to 66% of optimal | {PAPER['online_time_reduction']} less | "
            f"{100 * (1 - np.mean([r['online_s'] for r in long_ratios])):.0f}% less online time than MAPPO run until 66% "
            f"({len(long_ratios)}/{n_long} seed-floor pairs where LCIL reached it within its budget); counting its "
            f"offline phase too: {100 * (1 - np.mean([r['whole_s'] for r in long_ratios])):.0f}% less |")
        lines.append(
            f"| episodes to 66% of optimal | {PAPER['episodes_to_66pct']} | "
            f"{100 * np.mean([r['episodes'] for r in long_ratios]):.1f}% of MAPPO's (demonstration episodes included) |")
    elif ppo_t and lcil_t:
        red = 100 * (1 - np.mean(lcil_t) / np.mean(ppo_t))
        lines.append(f"| online training time to 66% of optimal | {PAPER['online_time_reduction']} less | {red:.0f}% less "
                     f"({np.mean(lcil_t):.1f} s vs {np.mean(ppo_t):.1f} s, seeds where both reached it) |")
    else:
        lines.append(f"| online training time to 66% of optimal | {PAPER['online_time_reduction']} less | MAPPO reached 66% in "
                     f"{len(ppo_t)} runs, LCIL in {len(lcil_t)} (see table) |")
    if ppo_e and lcil_e and not long_ratios:
        lines.append(f"| episodes to 66% of optimal | {PAPER['episodes_to_66pct']} | LCIL {np.mean(lcil_e):.0f} online "
                     f"(+{budgets['demo_episodes']} demonstration) vs MAPPO {np.mean(ppo_e):.0f}: "
                     f"{100 * (np.mean(lcil_e) + budgets['demo_episodes']) / max(np.mean(ppo_e), 1):.0f}% |")
    zs_all = [x for k, v in table["transfer"].items() if k.startswith("lcil") for x in v["zero_shot"]]
    ft_all = [x for k, v in table["transfer"].items() if k.startswith("lcil") for x in v["finetune"]]
    p3_all = [x for k, v in table["transfer"].items() if k.startswith("lcil") for x in v.get("finetune_with_target_demos", [])]
    ec_all = [x for k, v in table["transfer"].items() if k.startswith("lcil") for x in v["expert"]]
    lines.append(f"| zero-shot cross-domain task completion | {PAPER['zero_shot_completion']} | {np.mean(zs_all):.0f}% "
                 f"({100 * np.mean(zs_all) / np.mean(ec_all):.0f}% of the expert's) |")
    lines.append(f"| after minimal fine-tuning | {PAPER['after_finetune']} | {np.mean(ft_all):.0f}% completion "
                 f"({100 * np.mean(ft_all) / np.mean(ec_all):.0f}% of the expert's)"
                 + (f"; with LLM demonstrations on the target first: {np.mean(p3_all):.0f}% "
                    f"({100 * np.mean(p3_all) / np.mean(ec_all):.0f}% of the expert's)" if p3_all else "") + " |")
    lines += long_lines
    lines += ["", "![curves](curves.png)", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(table, indent=2, default=float))
    (out / "README.md").write_text("\n".join(lines) + "\n")
    plot(results, seeds=seeds, domains=domains, out=out)
    print("\n".join(lines))


def _long_baseline(results: dict, table: dict, *, seeds, domains, budgets: dict) -> list[str]:
    """The MAPPO-until-66% runs (``benchmarks/lcil_long_baseline.toml``), when there are any: the
    actual ratios of LCIL's online time and episodes to MAPPO's, or the bound MAPPO's cap gives."""
    keys = [k for k in results if k[0] == "ppo_long"]
    if not keys:
        return []
    lines = [
        "",
        "## MAPPO from scratch until 66% of the expert (cap: "
        f"{budgets.get('long_cap', 2_000_000):,} joint steps)",
        "",
        "LCIL's episodes include its demonstration episodes (online + demonstrations). LCIL offline s = its "
        "whole run's wall time minus its online time: the LLM-coordinated demonstrations, behaviour cloning, "
        "evaluations and checkpoints (an upper bound on what it spends before going online). Ratios = LCIL / MAPPO; "
        "the whole-time ratio puts LCIL's offline + online time over MAPPO's online time.",
        "",
        "| domain | seed | MAPPO steps to 66% | MAPPO episodes | MAPPO online s | LCIL episodes (online + demo) | "
        "LCIL online s | LCIL offline s | episodes ratio | online time ratio | whole-time ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    table["long_baseline"] = {}
    for _, dom, s in sorted(keys):
        if ("expert", dom, s) not in results:  # a seed the training sweeps did not run: nothing to compare with
            continue
        exp = results[("expert", dom, s)]["return"]
        r = results[("ppo_long", dom, s)]
        hit = reach(r["rows"], TARGET * exp)
        lcil = results.get(("lcil", dom, s))
        lhit = reach(lcil["rows"], TARGET * exp) if lcil else {}
        demo = budgets["demo_episodes"]
        entry = {"mappo": hit, "mappo_steps_run": r["summary"]["env_steps"], "lcil": lhit}
        if hit:
            m = f"{hit['steps']:,} | {hit['episodes']} | {hit['online_s']:.0f}"
        else:
            cut = " — cut for time before the cap" if r["summary"].get("status") == "stopped" else ""
            m = (f"not reached in {r['summary']['env_steps']:,}{cut} (best "
                 f"{100 * r['summary']['best_return'] / exp:.0f}% of expert) | ≥ {r['summary'].get('episodes', 0)} | "
                 f"≥ {r['summary'].get('online_s', 0):.0f}")
        if lhit:
            l_eps = lhit["episodes"] + demo
            offline = lcil["summary"]["wall_s"] - lcil["summary"]["online_s"]
            lcil_cols = f"{lhit['episodes']} + {demo} | {lhit['online_s']:.1f} | {offline:.0f}"
            denom_e = hit["episodes"] if hit else r["summary"].get("episodes", 0)
            denom_t = hit["online_s"] if hit else r["summary"].get("online_s", 0.0)
            bound = "" if hit else "≤ "
            ratios = (f"{bound}{100 * l_eps / max(denom_e, 1):.1f}% | "
                      f"{bound}{100 * lhit['online_s'] / max(denom_t, 1e-9):.1f}% | "
                      f"{bound}{100 * (offline + lhit['online_s']) / max(denom_t, 1e-9):.0f}%")
            entry["ratios"] = {"episodes": l_eps / max(denom_e, 1), "online_s": lhit["online_s"] / max(denom_t, 1e-9),
                               "whole_s": (offline + lhit["online_s"]) / max(denom_t, 1e-9), "bound": not hit}
        else:
            lcil_cols, ratios = "not reached | n/a | n/a", "n/a | n/a | n/a"
        table["long_baseline"][f"{dom}/{s}"] = entry
        lines.append(f"| {dom} | {s} | {m} | {lcil_cols} | {ratios} |")
    return lines


def plot(results: dict, *, seeds, domains, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(domains), figsize=(6 * len(domains), 4))
    for ax, dom in zip(np.atleast_1d(axes), domains, strict=True):
        exp = np.mean([results[("expert", dom, s)]["return"] for s in seeds])
        for method, color in (("ppo", "tab:blue"), ("lcil", "tab:red")):
            for s in seeds:
                rows = [r for r in results[(method, dom, s)]["rows"] if r.get("test/return") is not None]
                ax.plot([r["env_steps"] for r in rows], [100 * r["test/return"] / exp for r in rows], color=color,
                        alpha=0.8, label=("LCIL" if method == "lcil" else "MAPPO from scratch") if s == seeds[0] else None)
        ax.axhline(100 * TARGET, ls="--", color="gray", label="66% of expert")
        ax.axhline(100, ls=":", color="black", label="expert")
        ax.set_title(f"factory:{dom}-v0")
        ax.set_xlabel("online joint env steps")
        ax.set_ylabel("test team return, % of expert")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())

"""The report step of the LCIL benchmark run as sweeps (``benchmarks/lcil.toml``, ``lcil_transfer.toml``).

    python benchmarks/lcil_report.py SWEEP_DIR [--out DIR]   # SWEEP_DIR holds train/ and transfer/

Reads the two sweeps' run directories, adds what is not training (the expert coordinator's and a
random policy's returns on the same test episodes, zero-shot evaluation of the human-machine
policies on the other floors) and writes the same ``README.md``, ``results.json`` and
``curves.png`` as ``benchmarks/lcil.py``, into SWEEP_DIR. With a ``long/`` sweep beside them
(``benchmarks/lcil_long_baseline.toml``: MAPPO until 66% of the expert) it adds the actual ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lcil as bench  # noqa: E402  (the reference, zero-shot and report code of benchmarks/lcil.py)


def _domain(env: str) -> str:
    return env.split(":", 1)[-1].removesuffix("-v0")


def _load(sweep_dir: Path) -> tuple[dict, dict]:
    from guidedrl.config import load

    record = json.loads((sweep_dir / "sweep.json").read_text())
    failed = [t["id"] for t in record["trials"] if t["status"] == "failed"]
    if failed:
        raise SystemExit(f"{sweep_dir}: trials failed ({', '.join(failed)}); re-run the sweep to resume them")
    return record, load(sweep_dir / "sweep.toml")


def _summary_of(run_dir: Path, rows: list[dict]) -> dict:
    """The run's summary, or (a run stopped before it finished: the long baseline may be cut at a
    time limit) what its metric rows say so far."""
    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    tests = [r["test/return"] for r in rows if r.get("test/return") is not None]
    last = rows[-1]
    return {"status": "stopped", "env_steps": last["env_steps"], "best_return": max(tests, default=float("nan")),
            "final_return": tests[-1] if tests else float("nan"), "episodes": last.get("train/episodes", 0),
            "online_s": last.get("time/online_s", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--test-episodes", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="where README.md, results.json, curves.png go (default: SWEEP_DIR)")
    args = ap.parse_args()
    from guidedrl.records import read_metrics

    t0 = time.time()
    train, train_def = _load(args.sweep_dir / "train")
    transfer, _ = _load(args.sweep_dir / "transfer")
    results: dict = {}
    seeds, domains, transfer_to = set(), [], []
    for t in train["trials"]:
        method = "lcil" if "lcil" in t["settings"].get("methods", []) else "ppo"
        dom = _domain(t["settings"]["env"])
        run_dir = t["run_dir"]
        results[(method, dom, t["seed"])] = {"summary": json.loads((Path(run_dir) / "summary.json").read_text()),
                                             "rows": read_metrics(run_dir), "run_dir": run_dir}
        seeds.add(t["seed"])
        domains += [dom] if dom not in domains else []
    target_demos = None
    for t in transfer["trials"]:
        method = "lcil" if "lcil__" in t["settings"]["train.init_from"] else "ppo"
        dom = _domain(t["settings"]["env"])
        stage = "finetune"
        if "lcil" in t["settings"].get("methods", []):  # phase 3: LLM demonstrations on the target floor first
            stage, target_demos = "finetune_demos", t["settings"].get("lcil.episodes")
        results[(stage, method, dom, t["seed"])] = {"summary": json.loads((Path(t["run_dir"]) / "summary.json").read_text())}
        transfer_to += [dom] if dom not in transfer_to else []
    long_cap = None
    long_dir = args.sweep_dir / "long"  # MAPPO until 66% (lcil_long_baseline.toml); its trials may be cut for time
    if (long_dir / "sweep.toml").exists():
        from guidedrl.config import load

        long_cap = load(long_dir / "sweep.toml").get("steps")
        for run_dir in sorted((long_dir / "runs").glob("*")):
            rows = read_metrics(run_dir) if (run_dir / "config.toml").exists() else []
            if not rows:
                continue
            cfg = load(run_dir / "config.toml")
            results[("ppo_long", _domain(cfg["env"]), cfg["seed"])] = {
                "summary": _summary_of(run_dir, rows), "rows": rows, "run_dir": str(run_dir)}
    seeds = sorted(seeds)
    eps = args.test_episodes
    for dom in domains + transfer_to:
        for s in seeds:
            env = f"factory:{dom}-v0"
            results[("expert", dom, s)] = bench.expert_reference(env, seed=s, episodes=eps)
            results[("random", dom, s)] = bench.random_reference(env, seed=s, episodes=eps)
    for method in ("lcil", "ppo"):
        for s in seeds:
            src = results[(method, "human-machine", s)]["run_dir"]
            for dom in transfer_to:
                results[("zero_shot", method, dom, s)] = bench.zero_shot(src, f"factory:{dom}-v0", seed=s, episodes=eps)
    arms = {a["name"]: a["set"] for a in train_def["sweep"]["arms"]}
    budgets = {
        "ppo_steps": max(results[("ppo", d, s)]["summary"]["env_steps"] for d in domains for s in seeds),
        "lcil_steps": arms["lcil"].get("steps", train_def.get("steps")),
        "demo_episodes": arms["lcil"].get("lcil.episodes"),
        "finetune_steps": max(v["summary"]["env_steps"] for k, v in results.items() if k[0] == "finetune"),
        "test_episodes": eps,
        "quick": False,
        "target_demo_episodes": target_demos,
        "long_cap": long_cap,
    }
    wall = train["wall_s"] + transfer["wall_s"] + (time.time() - t0)
    out = args.out or args.sweep_dir
    bench.report(results, seeds=seeds, domains=domains, transfer_to=transfer_to, out=out, wall=wall,
                 budgets=budgets)
    readme = out / "README.md"
    readme.write_text(readme.read_text().replace(
        "Generated by `benchmarks/lcil.py`",
        f"Generated by `guidedrl sweep benchmarks/lcil.toml` and `lcil_transfer.toml` (backend {train['backend']}"
        f"{'' if train['parallel'] is None else ', --parallel ' + str(train['parallel'])}) and `benchmarks/lcil_report.py`", 1))


if __name__ == "__main__":
    main()

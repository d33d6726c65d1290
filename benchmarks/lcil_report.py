"""The report step of the LCIL benchmark run as sweeps (``benchmarks/lcil.toml``, ``lcil_transfer.toml``).

    python benchmarks/lcil_report.py SWEEP_DIR [--out DIR]   # SWEEP_DIR holds train/ and transfer/
    python benchmarks/lcil_report.py SWEEP_DIR --run [--parallel 2] [--seeds 0-2]   # run both sweeps first
    python benchmarks/lcil_report.py SWEEP_DIR --run --set preset=none ...          # other settings for both

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

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import lcil as bench  # noqa: E402  (the reference, zero-shot and report code of benchmarks/lcil.py)


def _domain(env: str) -> str:
    return env.split(":", 1)[-1].removesuffix("-v0")


def _load(sweep_dir: Path) -> tuple[dict, dict]:
    from guidedrl.config import load

    if not (sweep_dir / "sweep.json").exists():
        raise SystemExit(f"{sweep_dir}: no finished sweep here (sweep.json); run the stage sweeps first, or pass --run")
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


def _job(spec: dict) -> dict:
    """One reference or zero-shot evaluation (defined here, in ``__main__``, so Ray ships it by value:
    its workers cannot import ``benchmarks/lcil.py`` by name)."""
    sys.path.insert(0, spec.pop("_benchmarks"))
    import lcil

    return lcil.job(spec)


def _evaluate(specs: dict) -> dict:
    """The evaluations, as Ray tasks when this process has Ray up (``--run``), else one by one."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {key: bench.job(spec) for key, spec in specs.items()}
    remote = ray.remote(num_cpus=1, max_retries=0)(_job)
    here = str(Path(__file__).resolve().parent)
    refs = {key: remote.remote({**spec, "_benchmarks": here}) for key, spec in specs.items()}
    return {key: ray.get(ref) for key, ref in refs.items()}


def _run_stages(sweep_dir: Path, *, parallel: int, seeds: str | None, sets: list[str]) -> None:
    """Both stage sweeps (``lcil.toml`` into SWEEP_DIR/train, ``lcil_transfer.toml`` into
    SWEEP_DIR/transfer) on one Ray instance, which stays up for the report's evaluations: its workers
    (and their imports) serve every trial, where two ``guidedrl sweep`` commands start two instances."""
    import attrs

    from guidedrl.config import apply_overrides
    from guidedrl.sweep import choose_backend, load_sweep, parse_seeds, run_sweep

    backend = choose_backend("auto", parallel=parallel, address=None)
    started = False
    if backend == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=parallel, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            started = True
    try:
        for toml, stage in (("lcil.toml", "train"), ("lcil_transfer.toml", "transfer")):
            sweep = load_sweep(ROOT / toml)
            if seeds is not None:
                sweep = attrs.evolve(sweep, seeds=parse_seeds(seeds))
            if sets:
                sweep = attrs.evolve(sweep, base=apply_overrides(sweep.base, sets))
            record = run_sweep(sweep, sweep_dir / stage, backend=backend, parallel=parallel, report=False)
            if record["counts"]["failed"]:
                raise SystemExit(f"{sweep_dir / stage}: trials failed; their logs are in {sweep_dir / stage / 'logs'}")
    except BaseException:
        if started:
            ray.shutdown()
        raise


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep_dir", type=Path)
    ap.add_argument("--test-episodes", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="where README.md, results.json, curves.png go (default: SWEEP_DIR)")
    ap.add_argument("--run", action="store_true",
                    help="run both stage sweeps first, on one Ray instance that also runs the report's evaluations")
    ap.add_argument("--parallel", type=int, default=2, help="with --run: trials at once (default 2)")
    ap.add_argument("--seeds", default=None, help="with --run: seeds instead of the TOMLs' (e.g. 0-1)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --run: override a setting of both stage sweeps' base config (repeatable), e.g. the "
                    "MAPPO settings before the tuned preset: --set preset=none --set marl.lr=5e-4 --set marl.batch_size=512")
    args = ap.parse_args()

    t0 = time.time()
    if args.run:
        _run_stages(args.sweep_dir, parallel=args.parallel, seeds=args.seeds, sets=args.set)
    elif args.set:
        ap.error("--set needs --run (it changes the stage sweeps' settings)")
    try:
        _report(args, t0)
    finally:
        ray = sys.modules.get("ray")
        if args.run and ray is not None and ray.is_initialized():
            ray.shutdown()


def _report(args: argparse.Namespace, t0: float) -> None:
    from guidedrl.records import read_metrics

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
    specs = {}  # what is not training: the references and the zero-shot evaluations (benchmarks/lcil.py's jobs)
    for dom in domains + transfer_to:
        for s in seeds:
            env = f"factory:{dom}-v0"
            specs[("expert", dom, s)] = {"kind": "expert", "env": env, "seed": s, "episodes": eps}
            specs[("random", dom, s)] = {"kind": "random", "env": env, "seed": s, "episodes": eps}
    for method in ("lcil", "ppo"):
        for s in seeds:
            src = results[(method, "human-machine", s)]["run_dir"]
            for dom in transfer_to:
                specs[("zero_shot", method, dom, s)] = {"kind": "zero_shot", "run_dir": src, "env": f"factory:{dom}-v0",
                                                        "seed": s, "episodes": eps}
    results.update(_evaluate(specs))
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
    # with --run, t0 is before the stage sweeps; without, their recorded walls are added
    wall = time.time() - t0 if args.run else train["wall_s"] + transfer["wall_s"] + (time.time() - t0)
    out = args.out or args.sweep_dir
    bench.report(results, seeds=seeds, domains=domains, transfer_to=transfer_to, out=out, wall=wall,
                 budgets=budgets)
    readme = out / "README.md"
    readme.write_text(readme.read_text().replace(
        "Generated by `benchmarks/lcil.py`",
        f"Generated by `guidedrl sweep benchmarks/lcil.toml` and `lcil_transfer.toml` (backend {train['backend']}"
        f"{'' if train['parallel'] is None else ', --parallel ' + str(train['parallel'])}) and `benchmarks/lcil_report.py`", 1)
        .replace(" Return = team return", f" {_mappo_settings(results, domains, seeds)} Return = team return", 1))


def _mappo_settings(results: dict, domains: list[str], seeds: list[int]) -> str:
    """One sentence: the preset and MAPPO settings of the from-scratch runs (as their saved configs say)."""
    from guidedrl.config import load

    cfg = load(Path(results[("ppo", domains[0], seeds[0])]["run_dir"]) / "config.toml")
    m = cfg["marl"]
    return (f"MAPPO settings (every run): preset `{cfg.get('preset', 'none')}`, lr {m['lr']}, {m['steps_per_collect']} "
            f"steps per update, {m['repeat']} epochs of batch {m['batch_size']}, entropy {m['ent_coef']}, "
            f"GAE lambda {m['gae_lambda']}.")


if __name__ == "__main__":
    main()

"""The main job (``bash scripts/main.sh``): what LLM guidance buys, side by side.

1. A short first stage trains a sub-optimal multi-agent PPO (MAPPO) policy on a factory floor.
2. From that same checkpoint, training goes on for the same online budget twice per seed: plain
   MAPPO, and MAPPO guided by LCIL with the ``simulated`` LLM (the floor's expert coordinator behind
   the text interface, 10% of its plans wrong, 5% malformed): LLM-coordinated demonstrations,
   imitation, then fine-tuning with a decaying imitation term.
3. ``guidedrl compare`` writes the table; one plot shows both arms; a line per arm says what LCIL did.

Every step is an ordinary ``guidedrl`` command, printed before it runs, so each can be re-run by
hand. All arms read ``scripts/main.toml`` (every hyper-parameter written out) and differ only in
``--methods`` and LCIL's settings; runs go two at a time (one per CPU core).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CONFIG = Path(__file__).with_name("main.toml")
STAGE1_STEPS = 2048
SEEDS = (1, 2)
GUIDANCE = [  # LCIL's settings, written out (its defaults but for 10 instead of 20 demonstration episodes)
    "--methods", "lcil",
    "--set", "lcil.episodes=10",
    "--set", "lcil.replan_every=1",
    "--set", "lcil.imitation_steps=3000",
    "--set", "lcil.bc_coef=0.5",
    "--set", "lcil.bc_decay_steps=20000.0",
]
PLAIN, GUIDED = "mappo", "mappo+lcil"
ARMS = {PLAIN: [], GUIDED: GUIDANCE}
LABELS = {PLAIN: "plain MAPPO", GUIDED: "MAPPO + LCIL (simulated LLM)"}
MARKER = ".guidedrl-main-job"


def guidedrl(*args: str, log: Path | None = None) -> None:
    """Run one ``guidedrl`` command (printed first); its output goes to ``log`` when given."""
    exe = Path(sys.executable).with_name("guidedrl")
    cmd = [str(exe) if exe.exists() else "guidedrl", *args]
    print("$ guidedrl " + shlex.join(args) + (f"   > {log}" if log else ""), flush=True)
    if log is None:
        subprocess.run(cmd, check=True)
        return
    with open(log, "w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"main job: `guidedrl {shlex.join(args)}` failed; its output is in {log}")


def fresh_dir(out: Path) -> None:
    """Start from an empty ``out``; only a directory an earlier main job made is ever removed."""
    if out.exists():
        if not (out / MARKER).exists():
            sys.exit(f"main job: {out} exists and was not made by the main job; pass another directory")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by scripts/demo.py; the next main job replaces this directory\n")


def arm_line(arm: str, seed: int, summary: dict) -> str:
    head = f"  {LABELS[arm]:29s} seed {seed}: final return {summary['final_return']:6.1f}"
    if arm == PLAIN:
        return f"{head}   no guidance, 0 LLM calls"
    lcil = summary.get("method_counters", {}).get("lcil", {})
    return (
        f"{head}   {summary['llm_calls']} LLM calls ({summary['llm_backend']}), "
        f"{summary['counters'].get('demo_transitions', 0)} demonstration transitions, plans ok {lcil.get('plans_ok', 0)} / "
        f"repaired {lcil.get('plans_repaired', 0)} / rejected {lcil.get('plans_rejected', 0)}, "
        f"{summary.get('pretrain_steps', 0)} imitation steps"
    )


def plot(run_dirs: dict[tuple[str, int], Path], path: Path, title: str) -> Path:
    """Both arms in one plot (mean over seeds, band = std), labelled by arm."""
    from guidedrl.compare import load_run, plot_groups

    groups = {f"{LABELS[arm]}, seeds {', '.join(map(str, SEEDS))}": [load_run(run_dirs[(arm, s)]) for s in SEEDS] for arm in ARMS}
    return plot_groups(groups, path, title=title)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="runs/main", help="where the runs go (default runs/main)")
    out = Path(parser.parse_args().out)
    t0 = time.perf_counter()
    fresh_dir(out)
    config = os.path.relpath(CONFIG) if not os.path.relpath(CONFIG).startswith("..") else str(CONFIG)

    print(f"[main] 1/3 a short first stage: a sub-optimal MAPPO policy ({STAGE1_STEPS} joint env steps)")
    start = out / "start"
    guidedrl("run", config, "--steps", str(STAGE1_STEPS), "--seed", "0", "--out", str(start), "--quiet", "--no-plot", log=out / "start.log")
    begin = json.loads((start / "summary.json").read_text())["final_return"]
    print(f"[main]     starting policy: team test return {begin:.1f} (the expert coordinator gets about 86)")

    print(f"[main] 2/3 from that checkpoint, plain MAPPO and LCIL-guided MAPPO, seeds {', '.join(map(str, SEEDS))} (two at a time)")
    jobs = [(arm, seed) for seed in SEEDS for arm in ARMS]

    def run(job: tuple[str, int]) -> Path:
        arm, seed = job
        run_dir = out / f"{arm}-s{seed}"
        guidedrl(
            "run", config, "--seed", str(seed), "--set", f"train.init_from={json.dumps(str(start))}",
            *ARMS[arm], "--out", str(run_dir), "--quiet", "--no-plot", log=out / f"{arm}-s{seed}.log",
        )
        return run_dir

    with ThreadPoolExecutor(max_workers=2) as pool:
        run_dirs = dict(zip(jobs, pool.map(run, jobs), strict=True))

    print("[main] 3/3 the comparison")
    guidedrl("compare", *[str(run_dirs[j]) for j in jobs], "--out", str(out / "compare"))
    summaries = {j: json.loads((d / "summary.json").read_text()) for j, d in run_dirs.items()}
    env = summaries[jobs[0]]["env"]
    png = plot(run_dirs, out / "curves.png", f"{env}: same start, same online budget (simulated LLM)")
    print("what each arm did:")
    for arm, seed in jobs:
        print(arm_line(arm, seed, summaries[(arm, seed)]))
    ahead = [s for s in SEEDS if summaries[(GUIDED, s)]["final_return"] > summaries[(PLAIN, s)]["final_return"]]
    print(f"guided ahead of plain on {len(ahead)}/{len(SEEDS)} seeds (final team test return)")
    print(f"[main] done in {time.perf_counter() - t0:.0f}s: table {out}/compare/compare.md, plot {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Are guidedrl's unguided baselines as strong as Stable-Baselines3's? Side by side, same budgets.

Every guidance gain this project reports is measured against an unguided arm; this benchmark checks
that arm against the library a user already knows. For each task, guidedrl (with its preset, i.e.
what ``guidedrl run --env ENV --algo ALGO`` does) and SB3 (with the rl-baselines3-zoo settings the
presets were taken from) train for the same env-step budget and are evaluated on the same schedule
(every ``eval_every`` env steps, ``eval_episodes`` deterministic episodes). Reported per library,
mean over seeds:

- steps to threshold: env steps at the first evaluation whose mean return reaches the threshold
  (a seed that never gets there counts as the budget and is marked ``(n/3 reached)``);
- final return: the last evaluation's mean return;
- CPU s / 10k steps: process CPU time of training, evaluation excluded (each library evaluates
  with its own code, which is not what is compared), per 10k env steps. CPU time, not wall time,
  because the machine is shared; torch runs with one thread in both.

Each (task, library, seed) runs in its own subprocess, libraries alternating which goes first per
seed; each leaves its run in ``OUT/runs/``, so a killed benchmark started again with the same
arguments goes on where it stopped. Results go to ``benchmarks/results/baselines/`` (``results.json``
and ``README.md``).

SB3 is an optional dependency of this benchmark only (not of guidedrl)::

    pip install stable-baselines3
    nice -n 10 python benchmarks/baselines.py                 # the classic tasks, 3 seeds
    nice -n 10 python benchmarks/baselines.py --extended      # + Hopper-v5 (PPO, SAC), Pong RAM (PPO)
    python benchmarks/baselines.py --tasks cartpole-ppo --seeds 1   # one task
    python benchmarks/baselines.py --tasks hopper-ppo --steps 100000 --eval-every 10000 --threshold 1000  # reduced

The report (``README.md``) keeps the hand-written section from ``## Findings`` on when it is rewritten.

The extended tasks need ``mujoco`` / ``ale-py`` and hours of CPU; their SB3 settings are the zoo's
(noted per task), and guidedrl uses the adapters' presets (``hopper-v5-ppo``, ``hopper-v5-sac``,
``ale-pong-ram-v5-ppo``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

RESULTS = Path(__file__).resolve().parent / "results" / "baselines"


@attrs.frozen
class Task:
    env: str
    algo: str
    steps: int
    threshold: float
    eval_every: int
    eval_episodes: int
    sb3: dict[str, Any]
    """SB3 constructor arguments (the zoo's settings); ``n_envs`` and ``schedules`` handled here."""
    sb3_n_envs: int = 1
    sb3_env: str | None = None
    """Gymnasium id for SB3 when it differs from guidedrl's env id."""
    sb3_adapter: bool = False
    """SB3 trains and evaluates on the env that guidedrl's adapter for ``env`` makes (same observations)."""
    note: str = ""


ZOO = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/hyperparams"
TASKS: dict[str, Task] = {
    "cartpole-ppo": Task(
        "CartPole-v1", "ppo", 50_000, 475.0, 2000, 5,
        {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
         "learning_rate": "lin_1e-3", "clip_range": "lin_0.2"},
        sb3_n_envs=8, note=f"{ZOO}/ppo.yml CartPole-v1",
    ),
    "cartpole-dqn": Task(
        "CartPole-v1", "dqn", 50_000, 475.0, 2000, 5,
        {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
         "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
         "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]}},
        note=f"{ZOO}/dqn.yml CartPole-v1",
    ),
    "pendulum-sac": Task(
        "Pendulum-v1", "sac", 20_000, -200.0, 1000, 5,
        {"learning_rate": 1e-3},
        note=f"{ZOO}/sac.yml Pendulum-v1",
    ),
}
EXTENDED: dict[str, Task] = {
    "hopper-ppo": Task(
        "Hopper-v5", "ppo", 1_000_000, 2500.0, 20_000, 5,
        {"batch_size": 32, "n_steps": 512, "gamma": 0.999, "learning_rate": 9.80828e-05, "ent_coef": 0.00229519,
         "clip_range": 0.2, "n_epochs": 5, "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671,
         "policy_kwargs": {"log_std_init": -2, "ortho_init": False, "activation_fn": "ReLU",
                           "net_arch": {"pi": [256, 256], "vf": [256, 256]}}},
        note=f"{ZOO}/ppo.yml Hopper-v4 (without its VecNormalize, which guidedrl has no counterpart of)",
    ),
    "hopper-sac": Task(
        "Hopper-v5", "sac", 1_000_000, 2500.0, 20_000, 5, {"learning_starts": 10_000},
        note=f"{ZOO}/sac.yml Hopper-v4",
    ),
    "pong-ram-ppo": Task(
        "ALE/Pong-ram-v5", "ppo", 2_000_000, 0.0, 50_000, 3,
        {"n_steps": 128, "n_epochs": 4, "batch_size": 256, "learning_rate": "lin_2.5e-4", "clip_range": "lin_0.1",
         "vf_coef": 0.5, "ent_coef": 0.01,
         "policy_kwargs": {"activation_fn": "ReLU", "net_arch": {"pi": [256, 256], "vf": [256, 256]}}},
        sb3_n_envs=8, sb3_adapter=True,
        note=f"{ZOO}/ppo.yml atari, with 256x256 ReLU MLPs for RAM as in guidedrl's preset (the zoo has no RAM "
             "settings); SB3 sees guidedrl's adapter observations (2 RAM frames scaled to [0, 1])",
    ),
}
ALL = {**TASKS, **EXTENDED}


# --------------------------------------------------------------------------------------- guidedrl


def run_guidedrl(task: Task, seed: int) -> dict[str, Any]:
    import torch

    from guidedrl.config import from_dict
    from guidedrl.records import read_metrics
    from guidedrl.train import single, train

    eval_cpu = [0.0]
    evaluate = single.evaluate

    def timed_evaluate(*args: Any, **kwargs: Any) -> Any:  # the benchmark's stopwatch, not a change to training
        t0 = time.process_time()
        try:
            return evaluate(*args, **kwargs)
        finally:
            eval_cpu[0] += time.process_time() - t0

    single.evaluate = timed_evaluate
    torch.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="guidedrl-baselines-")
    config = from_dict(
        {
            "env": task.env, "algo": task.algo, "steps": task.steps, "seed": seed, "out": out,
            # Same evaluation schedule as the SB3 arm; no checkpoints (SB3 saves none either).
            "train": {"epoch_steps": task.eval_every, "test_episodes": task.eval_episodes, "checkpoint": False},
        }
    )
    t0 = time.process_time()
    result = train(config)
    cpu = time.process_time() - t0 - eval_cpu[0]
    curve = [(int(r["env_steps"]), float(r["test/return"])) for r in read_metrics(result.run_dir) if "test/return" in r]
    return {"curve": curve, "train_cpu_s": cpu, "env_steps": int(result.summary["env_steps"]), "preset": config.preset}


# -------------------------------------------------------------------------------------------- SB3


def _schedule(value: Any) -> Any:
    """The zoo's ``lin_X`` as SB3's schedule callable; ``policy_kwargs`` activation names as classes."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    if isinstance(value, dict) and isinstance(value.get("activation_fn"), str):  # kept a string for results.json
        import torch

        return {**value, "activation_fn": getattr(torch.nn, value["activation_fn"])}
    return value


def run_sb3(task: Task, seed: int) -> dict[str, Any]:
    try:
        import stable_baselines3 as sb3
    except ImportError:
        sys.exit("benchmarks/baselines.py needs Stable-Baselines3 for its SB3 arm: pip install stable-baselines3")
    import gymnasium as gym
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    if task.env.startswith("ALE/"):
        import ale_py

        gym.register_envs(ale_py)
    torch.set_num_threads(1)
    env_id = task.sb3_env or task.env
    if task.sb3_adapter:
        from guidedrl.registry import make_adapter

        make_env = make_adapter(task.env).make
    else:
        def make_env() -> gym.Env:
            return gym.make(env_id)
    curve: list[tuple[int, float]] = []
    eval_cpu = [0.0]

    class Evaluate(BaseCallback):
        """Evaluates every ``eval_every`` env steps, like guidedrl's epochs, and times itself."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = task.eval_every
            self.eval_env = make_env()
            self.eval_env.reset(seed=seed + 10_000)

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += task.eval_every
                t0 = time.process_time()
                returns, _ = evaluate_policy(self.model, self.eval_env, n_eval_episodes=task.eval_episodes,
                                             deterministic=True, return_episode_rewards=True)
                eval_cpu[0] += time.process_time() - t0
                curve.append((int(self.num_timesteps), float(statistics.fmean(returns))))
            return True

    kwargs = {k: _schedule(v) for k, v in task.sb3.items()}
    cls = {"ppo": sb3.PPO, "dqn": sb3.DQN, "sac": sb3.SAC}[task.algo]
    t0 = time.process_time()
    env = make_vec_env(make_env, n_envs=task.sb3_n_envs, seed=seed)
    model = cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    model.learn(total_timesteps=task.steps, callback=Evaluate())
    cpu = time.process_time() - t0 - eval_cpu[0]
    return {"curve": curve, "train_cpu_s": cpu, "env_steps": int(model.num_timesteps)}


# ----------------------------------------------------------------------------------------- driver


def _summarise(task: Task, runs: list[dict[str, Any]]) -> dict[str, Any]:
    steps_to, reached, finals, cpu = [], 0, [], []
    for run in runs:
        hit = next((s for s, r in run["curve"] if r >= task.threshold), None)
        reached += hit is not None
        steps_to.append(hit if hit is not None else task.steps)
        finals.append(run["curve"][-1][1] if run["curve"] else float("nan"))
        cpu.append(run["train_cpu_s"] / run["env_steps"] * 10_000)
    return {
        "steps_to_threshold": statistics.fmean(steps_to), "steps_to_threshold_per_seed": steps_to,
        "reached": reached, "seeds": len(runs), "final_return": statistics.fmean(finals),
        "final_return_std": statistics.pstdev(finals), "cpu_s_per_10k": statistics.fmean(cpu),
    }


def _table(results: dict[str, Any]) -> str:
    lines = [
        "| task | budget | threshold | lib | steps to threshold (mean; per seed) | final return | CPU s / 10k steps "
        "| steps ratio guidedrl/SB3 | CPU ratio guidedrl/SB3 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in results.items():
        steps, threshold = entry["task"]["steps"], entry["task"]["threshold"]
        budget = f"{steps // 1000}k" + (f" (reduced; full {ALL[name].steps // 1000}k)" if steps < ALL[name].steps else "")
        if threshold != ALL[name].threshold:
            budget += f" (threshold lowered from {ALL[name].threshold:g})"
        g, s = entry["summary"]["guidedrl"], entry["summary"]["sb3"]
        for lib, row in (("guidedrl", g), ("SB3", s)):
            ratio_steps = g["steps_to_threshold"] / s["steps_to_threshold"] if lib == "guidedrl" else None
            ratio_cpu = g["cpu_s_per_10k"] / s["cpu_s_per_10k"] if lib == "guidedrl" else None
            per_seed = ", ".join(f"{x / 1000:.0f}k" for x in row["steps_to_threshold_per_seed"])
            lines.append(
                f"| {name} | {budget} | {threshold:g} | {lib} | {row['steps_to_threshold'] / 1000:.1f}k "
                f"({per_seed}; {row['reached']}/{row['seeds']} reached) | {row['final_return']:.1f} ± {row['final_return_std']:.1f} "
                f"| {row['cpu_s_per_10k']:.1f} | {'' if ratio_steps is None else f'{ratio_steps:.2f}'} "
                f"| {'' if ratio_cpu is None else f'{ratio_cpu:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from: {', '.join(ALL)}")
    parser.add_argument("--extended", action="store_true", help="add " + ", ".join(EXTENDED))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, help="env-step budget instead of the task's (the report marks it reduced)")
    parser.add_argument("--eval-every", type=int, help="env steps between evaluations instead of the task's")
    parser.add_argument("--threshold", type=float, help="return threshold instead of the task's (e.g. one a reduced budget can reach)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--jobs", type=int, default=1, help="children at a time (2: both libraries of a seed together)")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS_JSON", help="only write the report of these results files")
    parser.add_argument("--child", nargs=5, metavar=("LIB", "TASK", "SEED", "STEPS", "EVAL_EVERY"), help=argparse.SUPPRESS)
    # (the threshold is not passed to children: it only enters the summary)
    args = parser.parse_args()
    if args.merge:  # results of separate invocations (e.g. one task per process) into one report
        merged: dict[str, Any] = {}
        for path in args.merge:
            merged.update(json.loads(Path(path).read_text()))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        _report(merged, Path(args.out), "`benchmarks/baselines.py --merge` of separate runs (see the commit message)")
        return
    if args.child:
        lib, name, seed, steps, eval_every = args.child[0], args.child[1], *map(int, args.child[2:])
        task = attrs.evolve(ALL[name], steps=steps, eval_every=eval_every)
        run = (run_guidedrl if lib == "guidedrl" else run_sb3)(task, seed)
        path = _run_file(Path(args.out), name, task, lib, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run))  # what a killed benchmark resumes from
        print(json.dumps(run))
        return
    names = [n.strip() for n in args.tasks.split(",") if n.strip()] + (list(EXTENDED) if args.extended else [])
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {', '.join(ALL)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    t_start = time.time()
    for name in names:
        task = attrs.evolve(
            ALL[name], steps=args.steps or ALL[name].steps, eval_every=args.eval_every or ALL[name].eval_every,
            threshold=ALL[name].threshold if args.threshold is None else args.threshold,
        )
        # Interleaved: seed by seed, the libraries alternating which starts first; with --jobs 2 the
        # two libraries of a seed run at the same time and so see the same load.
        jobs = [(lib, seed) for seed in range(args.seeds) for lib in (("guidedrl", "sb3") if seed % 2 == 0 else ("sb3", "guidedrl"))]
        done: dict[tuple[str, int], dict[str, Any]] = {}

        def child(job: tuple[str, int], name: str = name, task: Task = task) -> None:
            lib, seed = job
            path = _run_file(out, name, task, lib, seed)
            if path.exists():  # finished by an earlier, interrupted invocation
                done[job] = r = json.loads(path.read_text())
            else:
                argv = [sys.executable, __file__, "--child", lib, name, str(seed), str(task.steps), str(task.eval_every),
                        "--out", str(out)]
                proc = subprocess.run(argv, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"{lib} {name} seed {seed} failed:\n{proc.stderr[-3000:]}")
                done[job] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {name} seed {seed} {lib:8s} final {r['curve'][-1][1]:8.1f}  train CPU {r['train_cpu_s']:6.1f} s",
                  file=sys.stderr, flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(child, job) for job in jobs]:
                future.result()
        runs = {lib: [done[(lib, seed)] for seed in range(args.seeds)] for lib in ("guidedrl", "sb3")}
        results[name] = {
            "task": attrs.asdict(task),
            "runs": runs,
            "summary": {lib: _summarise(task, rs) for lib, rs in runs.items()},
        }
        (out / "results.json").write_text(json.dumps(results, indent=1))  # after every task: a kill keeps what ran
    _report(results, out, f"`nice -n 10 python benchmarks/baselines.py --jobs {args.jobs}`, {time.time() - t_start:.0f} s wall")


def _run_file(out: Path, name: str, task: Task, lib: str, seed: int) -> Path:
    """Where a child leaves its run: an interrupted benchmark, started again, skips the runs it finds."""
    return out / "runs" / f"{name}-{task.steps}-{task.eval_every}-{lib}-seed{seed}.json"


def _report(results: dict[str, Any], out: Path, how: str) -> None:
    table = _table(results)
    print("\n" + table)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    readme = out / "README.md"
    # The findings below the table are written by hand: a new report keeps them (to be updated).
    findings = readme.read_text().partition("\n## Findings")[1:] if readme.exists() else ("", "")
    readme.write_text(
        "# guidedrl vs Stable-Baselines3 (unguided baselines)\n\n"
        f"Produced by {how}, on a shared 2-core machine. guidedrl: `guidedrl run --env ENV --algo ALGO` with its "
        "preset (`--preset auto`); SB3: the rl-baselines3-zoo settings the presets were taken from. Same env-step "
        "budget and evaluation schedule for both (`results.json` holds each task's settings and every learning "
        "curve). Ratios < 1 favour guidedrl.\n\n" + table + "".join(findings)
    )


if __name__ == "__main__":
    main()

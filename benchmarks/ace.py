"""ACE on Grid2Op: SAC vs ACE (simulated LLM, error 0 and 0.2) vs the LLM alone vs the greedy expert.

Arms (the same env-step budget for every trained arm, the same seeds for every arm):

- ``sac``: discrete SAC with the grid's preset, no guidance;
- ``ace_e0`` / ``ace_e02``: SAC + ACE, the ``simulated`` LLM answering from the greedy expert with
  error rate 0 / 0.2 (a wrong answer is a random action of the whole vocabulary);
- ``pure_llm``: no RL, the simulated LLM (error 0.2) chooses every action (an ``action`` question per
  step; an invalid answer falls back to doing nothing);
- ``expert``: the greedy expert (simulate the shortlist, keep the lowest max loading), the
  ``simulated`` LLM's error-0 answer.

Trained arms train on the training chronics and every arm is evaluated on held-out chronics (case14:
train 0-1, test 2; NeurIPS 2020 track 1: train 0, test 1), ``--eval-episodes`` episodes of up to
``--max-steps`` steps, reset seeds 0.., deterministic policy. Reported per grid and arm, mean ± std
over seeds: mean episode reward (L2RPN line margin summed over the episode), mean survival steps,
LLM calls (training + evaluation) and accepted actor refinements. case14 runs with Grid2Op's random
line opponent (without it, doing nothing survives every test chronic).

Full configuration (hours of CPU)::

    nice -n 10 python benchmarks/ace.py --grids case14,neurips --seeds 0,1,2 --steps 40000

Results go to ``benchmarks/results/ace/`` (``results.json``, ``README.md`` with the tables and the
exact command).
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import attrs
import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "ace"
GRIDS = {
    "case14": {"env": "grid2op:l2rpn_case14_sandbox", "train": [0, 1], "test": [2], "opponent": True},
    "neurips": {"env": "grid2op:l2rpn_neurips_2020_track1", "train": [0], "test": [1], "opponent": False},
}
ARMS = ("sac", "ace_e0", "ace_e02", "pure_llm", "expert")


def env_kwargs(grid: dict[str, Any], chronics: list[int], max_steps: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"chronics": chronics, "max_steps": max_steps}
    if grid["opponent"]:
        kw["opponent"] = True
    return kw


def apply_sets(data: dict[str, Any], sets: list[str], arm: str) -> None:
    """``--set KEY=VALUE`` (VALUE as JSON, else a string) into a run config; ``ace.*`` only for ACE arms."""
    for item in sets:
        key, _, raw = item.partition("=")
        if key.startswith("ace.") and not arm.startswith("ace"):
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value


def train_arm(
    arm: str, grid: dict[str, Any], seed: int, steps: int, max_steps: int, out: Path, sets: list[str] = ()
) -> tuple[Any, dict]:
    """Train ``sac`` / ``ace_*``; returns (the run's directory, its summary)."""
    from guidedrl.config import from_dict
    from guidedrl.train import train

    data: dict[str, Any] = {
        "env": grid["env"], "algo": "sac", "steps": steps, "seed": seed, "out": str(out),
        "env_kwargs": env_kwargs(grid, grid["train"], max_steps),
        "train": {"epoch_steps": steps, "test_episodes": 1},
        "llm": {"backend": "simulated", "cache": "off", "options": {"error_rate": 0.2 if arm == "ace_e02" else 0.0}},
    }
    if arm.startswith("ace"):
        data["methods"] = ["ace"]
    apply_sets(data, list(sets), arm)
    result = train(from_dict(data), overwrite=True)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    return result.run_dir, summary


def trained_policy(run_dir: Path) -> Callable[[np.ndarray], int]:
    """The checkpointed policy of a run, acting deterministically."""
    from guidedrl.config import from_dict, load
    from guidedrl.context import RunContext
    from guidedrl.plugins import make_manager
    from guidedrl.records import find_checkpoint
    from guidedrl.registry import make_adapter
    from guidedrl.train import make_learner, resolve_device
    from guidedrl.train.loop import learner_state_of

    config = from_dict(load(run_dir / "config.toml"))
    config = attrs.evolve(config, methods=())
    ctx = RunContext(config=config, adapter=make_adapter(config.env, **config.env_kwargs), pm=make_manager(()),
                     run_dir=run_dir, device=resolve_device(config.train.device))
    learner = make_learner(ctx)
    learner.load_state_dict(learner_state_of(find_checkpoint(run_dir, fix="")[0]))
    ctx.algorithm = learner.algorithm
    return lambda obs: int(np.asarray(ctx.act(obs[None])).reshape(-1)[0])


def rollouts(adapter: Any, act: Callable[[np.ndarray], int], episodes: int) -> dict[str, float]:
    """Mean episode reward and survival over ``episodes`` test episodes (reset seeds 0..), plus how
    many distinct actions the policy played and the share of its most played one (a policy that
    collapsed to one constant action shows 1 and 1.0)."""
    rewards, survival, played = [], [], collections.Counter()
    env = adapter.make()
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=ep)
            total, done = 0.0, False
            while not done:
                a = act(obs)
                played[a] += 1
                obs, r, term, trunc, info = env.step(a)
                total += float(r)
                done = term or trunc
            rewards.append(total)
            survival.append(float(info["metrics"]["survival_steps"]))
    finally:
        env.close()
    top = played.most_common(1)[0][1] if played else 0
    return {
        "reward": float(np.mean(rewards)), "survival": float(np.mean(survival)),
        "distinct_actions": len(played), "top_action_share": round(top / max(1, sum(played.values())), 3),
    }


def run_arm(arm: str, name: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from guidedrl.config import LLMConfig
    from guidedrl.llm import LLMClient
    from guidedrl.registry import make_adapter

    grid = GRIDS[name]
    test_adapter = make_adapter(grid["env"], **env_kwargs(grid, grid["test"], args.max_steps))
    t0, c0 = time.perf_counter(), time.process_time()
    row: dict[str, Any] = {"grid": name, "arm": arm, "seed": seed, "llm_calls": 0, "accepted": 0}
    if arm in ("sac", "ace_e0", "ace_e02"):
        run_dir, summary = train_arm(
            arm, grid, seed, args.steps, args.max_steps, work / f"{name}_{arm}_{seed}", args.set
        )
        row["llm_calls"] = int(summary.get("llm_calls", 0) or 0)
        row["accepted"] = int(summary["counters"].get("ace/actor_accepted", 0))
        row["critic_reassigned"] = int(summary["counters"].get("ace/critic_reassigned", 0))
        row.update(rollouts(test_adapter, trained_policy(run_dir), args.eval_episodes))
    elif arm == "expert":
        expert = test_adapter.expert
        row.update(rollouts(test_adapter, lambda obs: int(expert.act(test_adapter.describe(obs).state)), args.eval_episodes))
    else:  # pure LLM: the simulated LLM (error 0.2, seeded) picks every action
        from guidedrl.registry import make_llm

        model = make_llm("simulated", adapter=test_adapter, error_rate=0.2, seed=seed)
        client = LLMClient(model, adapter=test_adapter, config=LLMConfig(cache="off"), run_dir=None)

        def act(obs: np.ndarray) -> int:
            a = client.suggest_action(obs)
            return 0 if a is None else int(a)

        row.update(rollouts(test_adapter, act, args.eval_episodes))
        row["llm_calls"] = int(client.summary()["llm_calls"])
        client.close()
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    row["cpu_s"] = round(time.process_time() - c0, 1)
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict[str, Any]], grid: str) -> str:
    lines = ["| arm | mean episode reward | mean survival steps | LLM calls | accepted refinements "
             "| distinct test actions | seeds |", "|---|---|---|---|---|---|---|"]
    for arm in ARMS:
        rs = [r for r in rows if r["grid"] == grid and r["arm"] == arm]
        if not rs:
            continue

        def ms(key: str) -> str:
            v = [float(r[key]) for r in rs]
            return f"{statistics.mean(v):.1f} ± {statistics.pstdev(v):.1f}"

        distinct = "/".join(str(r.get("distinct_actions", "?")) for r in rs)
        lines.append(
            f"| {arm} | {ms('reward')} | {ms('survival')} | {ms('llm_calls')} | {ms('accepted')} | {distinct} | {len(rs)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grids", default="case14,neurips")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=40000, help="training env steps of every trained arm")
    p.add_argument("--max-steps", type=int, default=288, help="steps per episode (training and test)")
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--work", default="runs/bench_ace", help="where the training runs go")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="run-config override for the trained arms (repeatable; ace.* only for the ACE arms)")
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in OUT/results.json that this invocation does not rerun")
    args = p.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    grids, arms, seeds = args.grids.split(","), args.arms.split(","), [int(s) for s in args.seeds.split(",")]
    if args.append and (out / "results.json").exists():  # keep the rows of earlier invocations not rerun now
        rerun = {(g, a, s) for g in grids for a in arms for s in seeds}
        old = json.loads((out / "results.json").read_text())
        rows = [r for r in old["rows"] if (r["grid"], r["arm"], r["seed"]) not in rerun]
        recorded = [*old.get("argv", []), "+", *sys.argv]
    else:
        recorded = sys.argv
    for name in grids:
        for seed in seeds:
            for arm in arms:
                rows.append(run_arm(arm, name, seed, args, work))
                (out / "results.json").write_text(json.dumps({"argv": recorded, "rows": rows}, indent=1))
    command = "nice -n 10 python " + " ".join(recorded).replace(" + ", "`, then `nice -n 10 python ")
    parts = [f"# ACE benchmark (`benchmarks/ace.py`)\n\nCommand: `{command}`\n"]
    for name in sorted({r["grid"] for r in rows}, key=list(GRIDS).index):
        parts.append(f"## {name} ({GRIDS[name]['env']}, test chronics {GRIDS[name]['test']})\n\n{table(rows, name)}\n")
    (out / "tables.md").write_text("\n".join(parts))
    print("\n".join(parts))


if __name__ == "__main__":
    main()

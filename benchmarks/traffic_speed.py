"""Speed of the road-network routing twin: joint steps per second on this CPU.

    .venv/bin/python benchmarks/traffic_speed.py [--seconds 2] [--repeats 3] [--grid 4x4]

Rows: vehicle counts N = 4, 8, 16, 32, 64. Columns: the PettingZoo ``ParallelEnv`` (one network, dict in /
dicts out, random actions for the vehicles on their way, auto-reset) and the batched numpy core
``TrafficSim`` stepping 64 networks at once (joint steps counted per network). Every cell is the median of
``--repeats`` measurements of ``--seconds`` each; the factory env (``factory:human-machine-v0``, 8 agents)
is measured alongside as a yardstick, since other processes may share the CPU (the load average before
and after is printed with the table). Target: ≥ 5,000 joint steps/s with 8 vehicles through the PettingZoo API.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from guidedrl_env_traffic import TrafficConfig, TrafficParallelEnv, TrafficSim


def bench_parallel(make, n: int, seconds: float) -> float:
    env = make(n)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 5, size=(512, n)).tolist()
    index = {a: i for i, a in enumerate(env.possible_agents)}
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for row in acts:
            if not env.agents:
                env.reset()
            env.step({a: row[index[a]] for a in env.agents})
        steps += len(acts)
    return steps / (time.perf_counter() - t0)


def bench_batched(rows: int, cols: int, n: int, n_envs: int, seconds: float) -> float:
    sim = TrafficSim(TrafficConfig(rows=rows, cols=cols, n_vehicles=n), n_envs=n_envs, seed=0)
    acts = np.random.default_rng(0).integers(0, 5, size=(64, n_envs, n))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a in acts:
            _, _, done = sim.step(a)
            sim.observe()
            if done.any():
                sim.reset_envs(done)
        steps += len(acts) * n_envs
    return steps / (time.perf_counter() - t0)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per cell (the median is shown)")
    ap.add_argument("--grid", default="4x4", help="ROWSxCOLS (default 4x4)")
    args = ap.parse_args()
    rows, cols = (int(x) for x in args.grid.lower().split("x"))

    def med(fn, *a) -> float:
        return statistics.median(fn(*a) for _ in range(args.repeats))

    def traffic(n: int) -> TrafficParallelEnv:
        return TrafficParallelEnv(rows, cols, n_vehicles=n)

    print(f"traffic:grid{rows}x{cols}-v0 on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}; median of {args.repeats} × {args.seconds:g} s per cell")
    print(f"load average (1, 5, 15 min) before: {_load()}")
    try:
        from guidedrl_env_factory import FactoryParallelEnv

        ref = med(bench_parallel, lambda n: FactoryParallelEnv("human-machine", n_agents=n), 8, args.seconds)
        print(f"yardstick: factory:human-machine-v0, 8 agents, PettingZoo API: {ref:,.0f} joint steps/s")
    except ImportError:
        pass
    print("| vehicles | PettingZoo ParallelEnv (steps/s) | TrafficSim ×64 (steps/s) |")
    print("|---|---|---|")
    ok = False
    for n in (4, 8, 16, 32, 64):
        p = med(bench_parallel, traffic, n, args.seconds)
        b64 = med(bench_batched, rows, cols, n, 64, args.seconds)
        print(f"| {n} | {p:,.0f} | {b64:,.0f} |", flush=True)
        if n == 8:
            ok = p >= 5000
    print(f"load average (1, 5, 15 min) after: {_load()}")
    print(f"target (≥ 5,000 joint steps/s, 8 vehicles, PettingZoo API): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

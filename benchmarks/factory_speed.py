"""Speed of the factory digital twins: joint steps per second on this CPU.

    .venv/bin/python benchmarks/factory_speed.py [--seconds 2] [--repeats 3]

Rows: the PettingZoo ``ParallelEnv`` (one floor, dict in / dicts out, random actions, auto-reset) and
the batched numpy core ``FactorySim`` stepping 64 and 512 floors at once (joint steps counted per
floor). Every cell is the median of ``--repeats`` measurements of ``--seconds`` each (other processes
may share the CPU: the load average before and after is printed with the table).
Target: ≥ 5,000 joint steps/s with 4 agents through the PettingZoo API.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from guidedrl_env_factory import DOMAINS, FactoryParallelEnv, FactorySim


def bench_parallel(domain: str, n_agents: int, seconds: float) -> float:
    env = FactoryParallelEnv(domain, n_agents=n_agents)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n_act = env.action_space("agent_0").n
    acts = rng.integers(0, n_act, size=(4096, n_agents))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for row in acts[:512]:
            if not env.agents:
                env.reset()
            env.step(dict(zip(env.possible_agents, row.tolist(), strict=True)))
        steps += 512
    return steps / (time.perf_counter() - t0)


def bench_batched(domain: str, n_agents: int, n_envs: int, seconds: float) -> float:
    sim = FactorySim(DOMAINS[domain], n_agents=n_agents, n_envs=n_envs, seed=0)
    rng = np.random.default_rng(0)
    acts = rng.integers(0, sim.n_actions, size=(64, n_envs, n_agents))
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a in acts:
            _, trunc = sim.step(a)
            sim.observe()
            if trunc.any():
                sim.reset_envs(trunc)
        steps += 64 * n_envs
    return steps / (time.perf_counter() - t0)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="measurements per cell (the median is shown)")
    ap.add_argument("--domain", default="human-machine", choices=sorted(DOMAINS))
    args = ap.parse_args()

    def med(fn, *a) -> float:
        return statistics.median(fn(*a) for _ in range(args.repeats))

    print(f"factory:{args.domain}-v0 on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}; median of {args.repeats} × {args.seconds:g} s per cell")
    print(f"load average (1, 5, 15 min) before: {_load()}")
    print(f"| agents | PettingZoo ParallelEnv (steps/s) | FactorySim ×64 (steps/s) | FactorySim ×512 (steps/s) |")
    print("|---|---|---|---|")
    ok = True
    for n in (2, 4, 8, 16):
        p = med(bench_parallel, args.domain, n, args.seconds)
        b64 = med(bench_batched, args.domain, n, 64, args.seconds)
        b512 = med(bench_batched, args.domain, n, 512, args.seconds)
        print(f"| {n} | {p:,.0f} | {b64:,.0f} | {b512:,.0f} |", flush=True)
        if n == 4:
            ok = p >= 5000
    print(f"load average (1, 5, 15 min) after: {_load()}")
    print(f"target (≥ 5,000 joint steps/s, 4 agents, PettingZoo API): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

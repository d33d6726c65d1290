"""Greedy expert vs do nothing vs random on a Grid2Op grid: mean episode reward and survival steps.

    python contrib_envs/grid2op/scripts/bench_expert.py [--grid l2rpn_case14_sandbox] [--max-steps 575] [--seeds 3]

Every policy plays every chronic shipped with the test dataset once per seed (the expert acts from
the JSON state that ``describe()`` builds, exactly what the ``simulated`` LLM backend sees).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from guidedrl.registry import make_adapter


def run(adapter, policy: str, chronic: int, seed: int, max_steps: int | None) -> dict[str, float]:
    env = adapter.make(max_steps=max_steps)
    rng = np.random.default_rng(seed)
    expert = adapter.expert
    obs, info = env.reset(seed=seed, options={"chronic": chronic})
    total, done, acted = 0.0, False, 0
    while not done:
        if policy == "expert":
            action = expert.act(adapter.describe(obs, info).state)
        elif policy == "random":
            action = adapter.vocabulary.sample(rng)
        else:
            action = 0
        acted += action != 0
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
    env.close()
    return {"reward": total, "survival": info["metrics"]["survival_steps"], "actions": acted}


def main() -> None:
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--grid", default="l2rpn_case14_sandbox")
    p.add_argument("--max-steps", type=int, default=0, help="0 = whole chronic")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--policies", default="do_nothing,random,expert")
    p.add_argument("--opponent", action="store_true", help="case14: add the random line attacker")
    args = p.parse_args()
    adapter = make_adapter(f"grid2op:{args.grid}", **({"opponent": True} if args.opponent else {}))
    env = adapter.make()
    chronics = env.chronics
    env.close()
    rows = {}
    for policy in args.policies.split(","):
        t = time.perf_counter()
        runs = [run(adapter, policy, c, s, args.max_steps or None) for c in chronics for s in range(args.seeds)]
        rows[policy] = {
            "mean_reward": round(float(np.mean([r["reward"] for r in runs])), 1),
            "mean_survival": round(float(np.mean([r["survival"] for r in runs])), 1),
            "min_survival": float(np.min([r["survival"] for r in runs])),
            "mean_non_noop_actions": round(float(np.mean([r["actions"] for r in runs])), 1),
            "episodes": len(runs),
            "wall_s": round(time.perf_counter() - t, 1),
        }
        print(policy, json.dumps(rows[policy]), flush=True)


if __name__ == "__main__":
    main()

"""Train a linear expert with Augmented Random Search (Mania et al. 2018, ARS V2-t) and export it.

    python contrib_envs/mujoco/scripts/train_expert_ars.py HalfCheetah-v5 --iterations 60

Linear policies trained by random search run HalfCheetah well and cost no gradient steps, so this is
the cheap way to a CPU-trained expert where PPO from raw observations is slow to get going. The
observation normalisation is folded into the single layer, so the exported file has the same format
as ``train_expert.py``'s (a dict of tensors; loads with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tianshou.utils.statistics import RunningMeanStd

EXPERTS = Path(__file__).resolve().parents[1] / "guidedrl_env_mujoco" / "experts"


def rollout(env: gym.Env, M: np.ndarray, stats: RunningMeanStd, seed: int, observe: list | None) -> float:
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        if observe is not None:
            observe.append(obs)
        z = (obs - stats.mean) / np.sqrt(stats.var + 1e-8)
        obs, r, term, trunc, _ = env.step(np.clip(M @ z, -1.0, 1.0))
        total += r
        done = term or trunc
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", help="a MuJoCo id, e.g. HalfCheetah-v5")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--directions", type=int, default=8)
    parser.add_argument("--top", type=int, default=4)
    parser.add_argument("--step", type=float, default=0.02)
    parser.add_argument("--noise", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="where to write the expert (default experts/<env>.pt)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    env = gym.make(args.env)
    n_obs, n_act = env.observation_space.shape[0], env.action_space.shape[0]
    M = np.zeros((n_act, n_obs))
    stats = RunningMeanStd(mean=np.zeros(n_obs), std=np.ones(n_obs), clip_max=None)
    stats.count = 0
    steps = 0
    for it in range(args.iterations):
        deltas = rng.normal(size=(args.directions, n_act, n_obs))
        seen: list = []
        ret = np.array([
            [rollout(env, M + s * args.noise * d, stats, int(rng.integers(1 << 30)), seen) for s in (1, -1)]
            for d in deltas
        ])
        steps += len(seen)
        stats.update(np.asarray(seen))
        best = np.argsort(-ret.max(axis=1))[: args.top]
        sigma = ret[best].std() + 1e-8
        M += args.step / (args.top * sigma) * np.einsum("k,kij->ij", ret[best, 0] - ret[best, 1], deltas[best])
        if it % 10 == 9 or it == args.iterations - 1:
            test = np.mean([rollout(env, M, stats, 10_000 + i, None) for i in range(3)])
            print(f"iteration {it + 1}: {steps} env steps, test return {test:.1f}", flush=True)
    scale = 1.0 / np.sqrt(stats.var + 1e-8)
    weight = M * scale[None, :]
    bias = -weight @ stats.mean
    payload = {
        "env_id": args.env, "activation": "none", "output": "clip",
        "weights": [torch.as_tensor(weight, dtype=torch.float32)], "biases": [torch.as_tensor(bias, dtype=torch.float32)],
        "steps": int(steps), "test_return": float(test), "seed": args.seed, "trainer": "ARS V2-t (linear)",
    }
    out = Path(args.out) if args.out else EXPERTS / f"{args.env}.pt"
    torch.save(payload, out)
    print(json.dumps({k: v for k, v in payload.items() if k not in ("weights", "biases")}))
    print(f"expert written to {out}")


if __name__ == "__main__":
    main()

"""Train the small expert policy a MuJoCo adapter ships, with guidedrl's own runner, and export it.

    python contrib_envs/mujoco/scripts/train_expert.py Hopper-v5 --steps 500000

Trains plain PPO or SAC (no guidance) on the raw observations, then writes the actor's mean network
(a 64x64 MLP, ~20 KB) to ``guidedrl_env_mujoco/experts/<env>.pt`` as a dict of tensors, numbers and
strings, so it loads with ``torch.load(weights_only=True)``. The experts only need to be clearly
better than the sub-optimal policies ULTRA's benchmark starts from; they are not state of the art.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from guidedrl.config import apply_overrides, from_dict
from guidedrl.train import train

EXPERTS = Path(__file__).resolve().parents[1] / "guidedrl_env_mujoco" / "experts"
PPO = {"lr": 3e-4, "steps_per_collect": 2048, "repeat": 10, "batch_size": 256, "hidden": [64, 64]}
SAC = {"hidden": [64, 64], "start_steps": 5000, "batch_size": 256}


def export(checkpoint: Path, env_id: str, out: Path, meta: dict, algo: str = "ppo") -> None:
    """PPO actors are tanh MLPs whose mean is clipped; SAC actors are ReLU MLPs whose mean is squashed
    by tanh. Both are stored as weight and bias lists plus those two words."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["learner"]["algorithm"]
    prefix = "policy.actor."
    layers = []
    for i in (0, 2):
        layers += [state[f"{prefix}preprocess.model.model.{i}.weight"], state[f"{prefix}preprocess.model.model.{i}.bias"]]
    layers += [state[f"{prefix}mu.model.0.weight"], state[f"{prefix}mu.model.0.bias"]]
    payload = {
        "env_id": env_id,
        "activation": "tanh" if algo == "ppo" else "relu",
        "output": "clip" if algo == "ppo" else "tanh",
        "weights": [w.detach().float().clone() for w in layers[0::2]],
        "biases": [b.detach().float().clone() for b in layers[1::2]],
        **meta,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, out)
    print(f"expert written to {out} ({out.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", help="Hopper-v5 or HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", choices=["ppo", "sac"], default="ppo")
    parser.add_argument("--out", default=None, help="run directory (default runs/experts/<env>)")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    args = parser.parse_args()
    out = args.out or f"runs/experts/{args.env}"
    data = {
        "env": args.env, "algo": args.algo, "steps": args.steps, "seed": args.seed, "out": out,
        "preset": "none",  # the shipped experts were trained with these settings alone (export assumes tanh for PPO)
        args.algo: PPO if args.algo == "ppo" else SAC,
        "train": {"epoch_steps": 10_000, "test_episodes": 5, "num_test_envs": 5, **({"num_envs": 1} if args.algo == "sac" else {})},
    }
    config = from_dict(apply_overrides(data, args.set))
    result = train(config, progress=True)
    meta = {"steps": int(result.summary["env_steps"]), "test_return": float(result.summary["final_return"]), "seed": args.seed}
    print(json.dumps(meta))
    export(Path(result.run_dir) / "checkpoint.pt", args.env, EXPERTS / f"{args.env}.pt", meta, args.algo)


if __name__ == "__main__":
    main()

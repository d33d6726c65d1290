"""How much does guidedrl cost over a hand-written Tianshou script?

Three arms train the same PPO on CartPole-v1 (same networks, hyper-parameters, seeds and steps):

  tianshou   a hand-written Tianshou 2.x script (Collectors, PPO's update, the same epoch
             boundaries and episode restarts as guidedrl's loop), no guidedrl;
  guidedrl   ``guidedrl.train.train`` with no methods (run records, checkpoints, TensorBoard on);
  no-op      guidedrl with a test plugin implementing all five hooks as no-ops.

Each (arm, seed) runs in a fresh subprocess, alternating arms, and times the training call only:
imports and Tianshou's one-off numba compilation are excluded from every arm alike. Time is the
process's CPU time (torch runs single-threaded and envs in-process, so it equals wall time on an
idle machine and stays fair on a busy one). Prints a table
of wall times and the ratios to the Tianshou script. Targets: guidedrl <= 1.05x, no-op <= 1.15x.

    .venv/bin/python benchmarks/overhead.py [--steps 30000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

HIDDEN = (64, 64)
NUM_ENVS, NUM_TEST_ENVS, TEST_EPISODES = 8, 2, 2  # few test episodes: their length varies with the policy, not with the framework
EPOCH_STEPS, STEPS_PER_COLLECT, REPEAT, BATCH = 5000, 1024, 10, 256


def _warm_numba() -> None:
    """Tianshou compiles numba kernels on first use (per argument types); compile them before
    timing, in every arm alike, by one tiny plain-Tianshou PPO update."""
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.utils.torch_utils import policy_within_training_step

    algo, train_envs, test_envs = _tianshou_ppo(seed=999)
    buffer = VectorReplayBuffer(64, NUM_ENVS)
    collector = Collector(algo, train_envs, buffer)
    collector.reset()
    with policy_within_training_step(algo.policy):
        collector.collect(n_step=64)
        algo.update(buffer=buffer, batch_size=32, repeat=1)
    train_envs.close()
    test_envs.close()


def _tianshou_ppo(seed: int):  # noqa: ANN202 - (algorithm, train envs, test envs)
    """The plain Tianshou PPO of the hand-written arm (same networks and settings as guidedrl's)."""
    import gymnasium as gym
    import torch
    from tianshou.algorithm import PPO
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.env import DummyVectorEnv
    from tianshou.utils.net.common import Net
    from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    actor = DiscreteActor(preprocess_net=Net(state_shape=env.observation_space.shape, hidden_sizes=HIDDEN), action_shape=2)
    critic = DiscreteCritic(preprocess_net=Net(state_shape=env.observation_space.shape, hidden_sizes=HIDDEN))
    for m in list(actor.modules()) + list(critic.modules()):
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.orthogonal_(m.weight)
            torch.nn.init.zeros_(m.bias)
    policy = DiscreteActorPolicy(actor=actor, dist_fn=torch.distributions.Categorical, action_space=env.action_space, deterministic_eval=True)
    algo = PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=1e-3), max_grad_norm=0.5, ent_coef=0.0, advantage_normalization=False)
    train_envs = DummyVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(NUM_ENVS)])
    test_envs = DummyVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(NUM_TEST_ENVS)])
    train_envs.seed([seed + i for i in range(NUM_ENVS)])
    test_envs.seed([seed + 10_000 + i for i in range(NUM_TEST_ENVS)])
    return algo, train_envs, test_envs


def arm_tianshou(steps: int, seed: int) -> tuple[float, float]:
    """The hand-written loop: collect, update, and every epoch test and restart the training episodes
    with the seeds guidedrl uses (its ``train/seeding.py``), so both arms train the very same policy."""
    import numpy as np
    import torch
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode

    _warm_numba()
    torch.set_num_threads(1)
    t0 = time.process_time()
    algo, train_envs, test_envs = _tianshou_ppo(seed)
    np.random.seed(seed)
    buffer = VectorReplayBuffer(STEPS_PER_COLLECT, NUM_ENVS)
    train_collector, test_collector = Collector(algo, train_envs, buffer), Collector(algo, test_envs)
    train_collector.reset()
    total = max(1, steps // EPOCH_STEPS) * EPOCH_STEPS
    env_steps, next_eval = 0, EPOCH_STEPS
    while env_steps < total:
        with policy_within_training_step(algo.policy):
            with torch.no_grad():
                env_steps += train_collector.collect(n_step=STEPS_PER_COLLECT).n_collected_steps
            algo.update(buffer=buffer, batch_size=BATCH, repeat=REPEAT)
            train_collector.reset_buffer(keep_statistics=True)
        if env_steps >= next_eval or env_steps >= total:
            next_eval = env_steps + EPOCH_STEPS
            test_envs.seed(10_000 + 1000 * seed)
            test_collector.reset()
            with torch.no_grad(), torch_train_mode(algo.policy, enabled=False):
                final = float(np.mean(test_collector.collect(n_episode=TEST_EPISODES).returns))
            if env_steps < total:
                train_envs.seed([int(s) for s in np.random.SeedSequence([seed, env_steps]).generate_state(NUM_ENVS)])
                train_collector.reset_env()
    return time.process_time() - t0, final


class NoOpMethod:
    """Implements all five hooks and returns nothing: the cost of being asked."""

    from guidedrl import hookimpl

    @hookimpl
    def generate_demonstrations(self, ctx):  # noqa: ANN001, ANN201
        return None

    @hookimpl
    def identify_critical_states(self, ctx, episodes):  # noqa: ANN001, ANN201
        return None

    @hookimpl
    def refine_action(self, ctx, obs, act):  # noqa: ANN001, ANN201
        return None

    @hookimpl
    def shape_reward(self, ctx, batch):  # noqa: ANN001, ANN201
        return None

    @hookimpl
    def update_policy(self, ctx, batch, algorithm):  # noqa: ANN001, ANN201
        return None


def arm_guidedrl(steps: int, seed: int, noop: bool) -> tuple[float, float]:
    import numpy as np

    from guidedrl.config import from_dict
    from guidedrl.train import train

    _warm_numba()
    out = tempfile.mkdtemp(prefix="guidedrl-overhead-")
    config = from_dict(
        {
            "env": "CartPole-v1",
            "algo": "ppo",
            "preset": "none",  # the arms must train the same PPO; the CartPole preset would change the settings
            "steps": max(1, steps // EPOCH_STEPS) * EPOCH_STEPS,
            "seed": seed,
            "out": out,
            "train": {"num_envs": NUM_ENVS, "num_test_envs": NUM_TEST_ENVS, "test_episodes": TEST_EPISODES, "epoch_steps": EPOCH_STEPS},
            "ppo": {"hidden": list(HIDDEN), "steps_per_collect": STEPS_PER_COLLECT, "repeat": REPEAT, "batch_size": BATCH},
        }
    )
    np.random.seed(seed)
    t0 = time.process_time()
    result = train(config, extra_plugins={"noop": NoOpMethod()} if noop else None)
    return time.process_time() - t0, float(result.summary["final_return"])


def _child(arm: str, steps: int, seed: int) -> None:
    if arm == "tianshou":
        cpu, final = arm_tianshou(steps, seed)
    else:
        cpu, final = arm_guidedrl(steps, seed, noop=arm == "no-op")
    print(json.dumps({"arm": arm, "seed": seed, "cpu_s": cpu, "final_return": final}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("ARM", "STEPS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    arms = ["tianshou", "guidedrl", "no-op"]
    walls: dict[str, list[float]] = {a: [] for a in arms}
    finals: dict[str, list[float]] = {a: [] for a in arms}
    for seed in range(args.seeds):
        order = arms[seed % 3 :] + arms[: seed % 3]  # alternate which arm goes first
        for arm in order:
            out = subprocess.run(
                [sys.executable, __file__, "--child", arm, str(args.steps), str(seed)],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            walls[arm].append(json.loads(out)["cpu_s"])
            finals[arm].append(json.loads(out)["final_return"])
            print(f"  seed {seed} {arm:9s} {walls[arm][-1]:7.2f} s", file=sys.stderr)
    base = statistics.median(walls["tianshou"])
    print(f"\nPPO CartPole-v1, {max(1, args.steps // EPOCH_STEPS) * EPOCH_STEPS} env steps, {args.seeds} seeds, training call only\n")
    print("| arm | CPU s (median) | per seed | ratio to Tianshou (median) | per-seed ratios | target | final test return per seed |")
    print("|---|---|---|---|---|---|---|")
    targets = {"tianshou": "", "guidedrl": "<= 1.05", "no-op": "<= 1.15"}
    for arm in arms:
        ratios = [w / b for w, b in zip(walls[arm], walls["tianshou"], strict=True)]
        print(
            f"| {arm} | {statistics.median(walls[arm]):.2f} | {', '.join(f'{w:.2f}' for w in walls[arm])} | "
            f"{statistics.median(walls[arm]) / base:.3f} | {', '.join(f'{r:.3f}' for r in ratios)} | {targets[arm]} | "
            f"{', '.join(f'{f:.1f}' for f in finals[arm])} |"
        )
    same = all(finals[a] == finals["tianshou"] for a in arms)
    print(f"\nThe arms trained {'the same policies (equal final returns)' if same else 'DIFFERENT policies: the ratios compare unlike work'}.")


if __name__ == "__main__":
    main()

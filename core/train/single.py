"""Single-agent training over Tianshou: collect, let methods look, update, evaluate, checkpoint.

The loop is written here rather than using Tianshou's ``Trainer`` because guidance needs a place
between collection and update (critical states of finished episodes) and every epoch must leave a
checkpoint that ``--resume`` continues from; the collectors, buffers and algorithms are Tianshou's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm
from tianshou.data import Collector
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode
from tqdm.auto import tqdm

from guidedrl.records import restore_replay_buffer
from guidedrl.train import hooks, seeding
from guidedrl.guidance import imitation_loss
from guidedrl.train.algorithms import ALGORITHMS, apply_schedules, build_algorithm
from guidedrl.train.buffers import anneal_beta, make_replay_buffer
from guidedrl.train.collector import GuidedCollector
from guidedrl.train.vector import make_vector_env

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.records import RunRecorder


def evaluate(algorithm: Any, collector: Collector, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` test episodes with the deterministic policy."""
    collector.env.seed(seed)  # env i gets seed + i: distinct, reproducible test episodes
    collector.reset()
    with torch.no_grad(), torch_train_mode(algorithm.policy, enabled=False), policy_within_training_step(
        algorithm.policy, enabled=False
    ):
        stats = collector.collect(n_episode=episodes)
    return np.asarray(stats.returns, dtype=np.float64)


def pretrain(ctx: RunContext, algorithm: Any, progress: bool) -> dict[str, float]:
    """Offline behaviour cloning of ``ctx.demos`` into the policy (``pretrain.steps`` steps)."""
    cfg = ctx.config.pretrain
    steps = hooks.pretrain_steps(ctx)
    obs = np.concatenate([d.obs for d in ctx.demos])
    act = np.concatenate([d.act for d in ctx.demos])
    params = list(algorithm.policy.parameters())
    optim = torch.optim.Adam(params, lr=cfg.lr)
    losses = []
    for _ in tqdm(range(steps), desc="pretrain (imitation)", disable=not progress, leave=False):
        idx = ctx.rng.integers(len(obs), size=min(cfg.batch_size, len(obs)))
        loss = imitation_loss(algorithm.policy, obs[idx], act[idx])
        optim.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        losses.append(float(loss.detach()))
    return {"pretrain/loss_first": losses[0], "pretrain/loss_last": float(np.mean(losses[-20:]))}


def train_single(ctx: RunContext, recorder: RunRecorder, *, resume: bool, progress: bool) -> dict[str, Any]:
    cfg = ctx.config
    hook_set = hooks.HookSet(ctx.pm)
    probe = ctx.adapter.make()
    try:
        algorithm, optim_attr = build_algorithm(cfg, probe, ctx.device)
    finally:
        probe.close()
    algorithm.attach_guidance(ctx, hook_set, optim_attr)
    ctx.algorithm = algorithm
    on_policy = isinstance(algorithm, OnPolicyAlgorithm)
    algo_cfg = ALGORITHMS.get(cfg.algo).settings(cfg)

    start = {"env_steps": 0, "best_return": -np.inf, "epoch": 0, "final_return": float("nan"), "stopped_early": False}
    checkpoint = recorder.resumed_state if resume else None  # loaded and checked by train()
    if checkpoint is not None:
        algorithm.load_state_dict(checkpoint["algorithm"])
        start.update({k: checkpoint[k] for k in start if k in checkpoint})
        ctx.counters.update(checkpoint.get("counters", {}))
        if "updates" in checkpoint and hasattr(algorithm, "_iter"):
            algorithm._iter = int(checkpoint["updates"])  # DQN's count toward the next target-network sync
        _load_method_states(ctx, checkpoint.get("methods", {}))
    elif cfg.train.init_from:
        _init_from(algorithm, cfg.train.init_from)

    train_envs = make_vector_env(ctx.adapter, cfg.train.num_envs, cfg.train.vector, seed=cfg.seed)
    test_envs = make_vector_env(ctx.adapter, cfg.train.num_test_envs, "dummy", seed=cfg.seed + 10_000)
    buffer_size = algo_cfg.steps_per_collect if on_policy else algo_cfg.buffer_size
    buffer = make_replay_buffer(cfg, buffer_size, cfg.train.num_envs)
    train_collector = GuidedCollector(algorithm, train_envs, buffer, exploration_noise=True, ctx=ctx, hook_set=hook_set)
    test_collector = Collector(algorithm, test_envs)
    train_collector.reset()
    if checkpoint is not None and recorder.resumed_buffer is not None:
        restore_replay_buffer(buffer, recorder.resumed_buffer)  # after reset(), which empties the buffer
        recorder.resumed_buffer = None

    if checkpoint is None and hook_set.demonstrations:
        hooks.generate_demonstrations(ctx)
        if ctx.demos and hooks.pretrain_steps(ctx) > 0:
            recorder.row(0, pretrain(ctx, algorithm, progress))

    env_steps, best, epoch = int(start["env_steps"]), float(start["best_return"]), int(start["epoch"])
    ctx.env_steps = env_steps
    final = float(start["final_return"])  # a run killed after its last checkpoint resumes with nothing left to do
    stopped_early = bool(start["stopped_early"])
    if checkpoint is not None:
        if "rng" in checkpoint:
            seeding.restore_rng_state(ctx, checkpoint["rng"])
        if env_steps < cfg.steps and not stopped_early:
            # the uninterrupted run restarted its episodes right after this checkpoint (seeding.py)
            train_collector.restart_episodes(seeding.episode_seeds(cfg.seed, env_steps, cfg.train.num_envs))
    t0 = time.perf_counter()
    next_eval = env_steps + cfg.train.epoch_steps
    train_returns: list[float] = []
    if not on_policy and env_steps == 0 and algo_cfg.start_steps > 0:
        stats = train_collector.collect(n_step=algo_cfg.start_steps, random=True)
        env_steps += stats.n_collected_steps
        ctx.env_steps = env_steps
        train_collector.pop_finished()
        train_collector.shape_new_transitions()
    pbar = tqdm(total=cfg.steps, initial=env_steps, desc=f"{cfg.env} {cfg.algo}", unit="step", disable=not progress)
    while env_steps < cfg.steps and not stopped_early:
        apply_schedules(algorithm, cfg, env_steps)  # exploration for this collection (also after --resume)
        with policy_within_training_step(algorithm.policy):
            with torch.no_grad():
                stats = train_collector.collect(n_step=algo_cfg.steps_per_collect)
            env_steps += stats.n_collected_steps
            ctx.env_steps = env_steps
            pbar.update(stats.n_collected_steps)
            train_returns.extend(float(r) for r in stats.returns)
            if hook_set.critical_states:
                episodes = train_collector.pop_finished()
                if episodes:
                    hooks.identify_critical_states(ctx, episodes)
            train_collector.shape_new_transitions()  # each transition meets shape_reward once, here
            apply_schedules(algorithm, cfg, env_steps)  # learning rate and clip range for this update
            anneal_beta(buffer, cfg, env_steps)  # prioritized replay's importance-sampling exponent
            if on_policy:
                hooks.begin_update(ctx)
                update_stats = algorithm.update(buffer=buffer, batch_size=algo_cfg.batch_size, repeat=algo_cfg.repeat)
                hooks.check_losses(ctx, update_stats.get_loss_stats_dict())
                train_collector.reset_buffer(keep_statistics=True)
            else:
                n_updates = max(1, round(algo_cfg.updates_per_step * stats.n_collected_steps))
                for _ in range(n_updates):
                    hooks.begin_update(ctx)
                    update_stats = algorithm.update(buffer=buffer, sample_size=algo_cfg.batch_size)
                    hooks.check_losses(ctx, update_stats.get_loss_stats_dict())
        if env_steps >= next_eval or env_steps >= cfg.steps:
            epoch += 1
            next_eval = env_steps + cfg.train.epoch_steps
            returns = evaluate(algorithm, test_collector, cfg.train.test_episodes, cfg.seed + 10_000 + epoch)
            final = float(returns.mean())
            best = max(best, final)
            row = {
                "test/return": final,
                "test/return_std": float(returns.std()),
                "train/return": float(np.mean(train_returns)) if train_returns else float("nan"),
                "train/episodes": len(train_returns),
                "wall_s": time.perf_counter() - t0,
                **update_stats.get_loss_stats_dict(),
                **algorithm.pop_guidance_stats(),
                **{f"counters/{k}": v for k, v in ctx.counters.items()},
            }
            if ctx.llm_started:
                row.update({f"llm/{k}": v for k, v in ctx.llm.summary().items() if isinstance(v, (int, float))})
            recorder.row(env_steps, row)
            train_returns = []
            pbar.set_postfix(test_return=f"{final:.1f}", best=f"{best:.1f}")
            stopped_early = cfg.train.stop_return is not None and final >= cfg.train.stop_return
            if cfg.train.checkpoint:
                _save_checkpoint(ctx, recorder, algorithm, buffer, on_policy, env_steps, best, epoch, final, stopped_early)
            if env_steps < cfg.steps and not stopped_early:
                # Episodes restart here, in every run, so a run resumed from this checkpoint sees the
                # same env states as the uninterrupted one (seeding.py).
                train_collector.restart_episodes(seeding.episode_seeds(cfg.seed, env_steps, cfg.train.num_envs))
    pbar.close()
    if np.isnan(final):  # resumed from a checkpoint written before final returns were recorded
        returns = evaluate(algorithm, test_collector, cfg.train.test_episodes, cfg.seed + 10_000 + epoch)
        final = float(returns.mean())
        best = max(best, final)
    train_envs.close()
    test_envs.close()
    return {
        "env_steps": env_steps,
        "best_return": best,
        "final_return": final,
        "epochs": epoch,
        "stopped_early": stopped_early,
        "train_wall_s": time.perf_counter() - t0,
    }


def _method_states(ctx: RunContext) -> dict[str, Any]:
    states = {}
    for name, plugin in ctx.pm.methods().items():
        getter = getattr(plugin, "state_dict", None)
        if callable(getter):
            states[name] = getter()
    return states


def _load_method_states(ctx: RunContext, states: dict[str, Any]) -> None:
    for name, plugin in ctx.pm.methods().items():
        loader = getattr(plugin, "load_state_dict", None)
        if callable(loader) and name in states:
            loader(states[name])


def _save_checkpoint(
    ctx: RunContext, recorder: RunRecorder, algorithm: Any, buffer: Any, on_policy: bool, env_steps: int, best: float, epoch: int,
    final: float, stopped_early: bool,
) -> None:
    # Off-policy runs save the replay buffer with the checkpoint, as one pair (records.py).
    recorder.save_checkpoint(
        {
            "algorithm": algorithm.state_dict(),
            "env_steps": env_steps,
            "best_return": best,
            "epoch": epoch,
            "final_return": final,
            "stopped_early": stopped_early,
            "rng": seeding.rng_state(ctx),
            "updates": int(getattr(algorithm, "_iter", 0)),
            "counters": dict(ctx.counters),
            "methods": _method_states(ctx),
        },
        buffer=None if on_policy else buffer,
    )


def _init_from(algorithm: Any, source: str) -> None:
    """Load only the networks of another run's checkpoint (not optimisers, not counters)."""
    from guidedrl.errors import ConfigError
    from guidedrl.records import load_run_checkpoint

    state = load_run_checkpoint(source)["algorithm"]
    state = {k: v for k, v in state.items() if not k.endswith(algorithm._STATE_DICT_KEY_OPTIMIZERS)}
    # nn.Module's loader, not Algorithm's (which expects optimiser states too).
    result = torch.nn.Module.load_state_dict(algorithm, state, strict=False)
    if result.unexpected_keys or result.missing_keys:
        raise ConfigError(
            f"train.init_from: {source!r} holds a different network (e.g. {(result.unexpected_keys or result.missing_keys)[:3]}); "
            "use a run of the same env, algo and network sizes"
        )

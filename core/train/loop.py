"""The one epoch loop every run goes through, single- and multi-agent alike.

    demonstrations → pre-training → [collect → identify_critical_states → shape_reward → update
    → (every ``train.epoch_steps``) evaluate → metrics row → checkpoint] until ``steps``

The loop is written here rather than using Tianshou's ``Trainer`` because guidance needs places
between collection and update (critical states of finished episodes, shaping of the new
transitions) and every epoch must leave a checkpoint that ``--resume`` continues from. What learns
is a :class:`~guidedrl.train.learner.Learner`: Tianshou's algorithms for single-agent runs
(:mod:`guidedrl.train.single`), the multi-agent learner for PettingZoo envs.

One checkpoint for every kind of run (``checkpoint.pt``, loaded with ``weights_only=True``):
``learner`` (networks, optimisers, the learner's counters), the loop's counters (``env_steps``,
``epoch``, ``best_return``, ...), RNG states, ``counters``, every method plugin's ``state_dict()``
and the demonstrations (so a resumed run does not ask for them again); off-policy learners save their
replay buffer beside it as one pair (``records.py``). A first checkpoint is written right after the
demonstrations and pre-training, so a run killed during its first epoch keeps them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from guidedrl.records import load_run_checkpoint, restore_replay_buffer
from guidedrl.train import hooks, seeding
from guidedrl.types import Demonstrations

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.records import RunRecorder
    from guidedrl.train.learner import Evaluation, Learner


def run_epochs(ctx: RunContext, learner: Learner, recorder: RunRecorder, *, resume: bool, progress: bool) -> dict[str, Any]:
    """Train ``learner`` for ``ctx.config.steps`` env steps with the run's hooks; returns the summary's
    training figures (``env_steps``, ``best_return``, ``final_return``, ...)."""
    cfg = ctx.config
    tc = cfg.train
    hook_set = hooks.HookSet(ctx.pm)
    ctx.algorithm = learner.algorithm
    state: dict[str, Any] = {
        "env_steps": 0, "best_return": -np.inf, "epoch": 0, "final_return": float("nan"), "stopped_early": False,
        "episodes": 0, "online_s": 0.0, "pretrain_steps": 0, "final_metrics": {},
    }
    checkpoint = recorder.resumed_state if resume else None  # loaded and checked by train()
    if checkpoint is not None:
        learner.load_state_dict(learner_state_of(checkpoint))
        state.update({k: checkpoint[k] for k in state if k in checkpoint})
        ctx.counters.update(checkpoint.get("counters", {}))
        ctx.demos.extend(demos_from_state(checkpoint.get("demos", [])))
        _load_method_states(ctx, checkpoint.get("methods", {}))
    elif tc.init_from:
        learner.load_networks(learner_state_of(load_run_checkpoint(tc.init_from)), tc.init_from)

    learner.start()
    if checkpoint is not None and recorder.resumed_buffer is not None:
        restore_replay_buffer(learner.replay_buffer(), recorder.resumed_buffer)  # after start(), which empties it
        recorder.resumed_buffer = None
    test_seed = test_seed_of(cfg.seed)

    def evaluate() -> Evaluation:
        # the same test episodes in every evaluation, so rows compare like with like
        return learner.evaluate(tc.test_episodes, test_seed)

    def checkpoint_now() -> None:
        if tc.checkpoint:
            recorder.save_checkpoint(
                {
                    "learner": learner.state_dict(),
                    **{k: state[k] for k in state},
                    "rng": seeding.rng_state(ctx),
                    "counters": dict(ctx.counters),
                    "methods": _method_states(ctx),
                    "demos": demos_state(ctx.demos),
                    "learner_kind": type(learner).__name__,
                },
                buffer=learner.replay_buffer(),
            )

    if checkpoint is None:
        if hook_set.demonstrations:
            hooks.generate_demonstrations(ctx)
        steps = hooks.pretrain_steps(ctx) if ctx.demos else 0
        if steps > 0:
            stats = learner.pretrain(ctx.demos, steps, progress)
            state["pretrain_steps"] = steps
            result = evaluate()
            state["final_return"] = float(result.returns.mean())
            state["best_return"] = state["final_return"]
            state["final_metrics"] = result.metrics
            recorder.row(0, {**_test_row(result), **stats})
        if ctx.demos or steps > 0:
            checkpoint_now()  # what the LLM produced is not asked for again after a crash

    env_steps, epoch = int(state["env_steps"]), int(state["epoch"])
    ctx.env_steps = env_steps
    if checkpoint is not None:
        if "rng" in checkpoint:
            seeding.restore_rng_state(ctx, checkpoint["rng"])
        if 0 < env_steps < cfg.steps and not state["stopped_early"]:
            # the uninterrupted run restarted its episodes right after this checkpoint (seeding.py);
            # after the step-0 checkpoint (demonstrations) it went on from the envs' first reset,
            # which start() has just repeated
            learner.restart_episodes(seeding.episode_seeds(cfg.seed, env_steps, learner.n_train_envs()))
    next_eval = env_steps + tc.epoch_steps  # off-policy warm-up steps count toward the first epoch
    if env_steps == 0:
        env_steps += learner.warmup()
        ctx.env_steps = env_steps
    train_returns: list[float] = []
    train_metrics: list[dict[str, float]] = []
    update_stats: dict[str, float] = {}
    epoch_start_steps, t0 = env_steps, time.perf_counter()
    pbar = tqdm(total=cfg.steps, initial=env_steps, desc=f"{cfg.env} {cfg.algo}", unit="step", disable=not progress)
    while env_steps < cfg.steps and not state["stopped_early"]:
        t_online = time.perf_counter()
        collected = learner.collect(env_steps)
        env_steps += collected.env_steps
        ctx.env_steps = env_steps
        pbar.update(collected.env_steps)
        train_returns.extend(collected.returns)
        train_metrics.extend(collected.metrics)
        state["episodes"] += len(collected.returns)
        if hook_set.critical_states:
            episodes = learner.pop_finished()
            if episodes:
                hooks.identify_critical_states(ctx, episodes)
        shaping = learner.shape_rewards()
        update_stats = {**learner.update(env_steps), **shaping}
        state["online_s"] += time.perf_counter() - t_online
        if env_steps >= next_eval or env_steps >= cfg.steps:
            if hook_set.critical_states and env_steps < cfg.steps:
                # The episodes in progress are restarted below; what they hold so far is handed on as
                # trajectory chunks, before the checkpoint, so a resumed run has seen the same.
                cut = learner.cut_episodes()
                if cut:
                    hooks.identify_critical_states(ctx, cut)
            epoch += 1
            next_eval = env_steps + tc.epoch_steps
            result = evaluate()
            final = float(result.returns.mean())
            state.update(
                epoch=epoch, env_steps=env_steps, final_return=final, final_metrics=result.metrics,
                best_return=max(float(state["best_return"]), final),
            )
            elapsed = time.perf_counter() - t0
            row = {
                **_test_row(result),
                "train/return": float(np.mean(train_returns)) if train_returns else float("nan"),
                "train/episodes": state["episodes"],
                **_mean_metrics("train", train_metrics),
                "train/steps_per_s": (env_steps - epoch_start_steps) / max(elapsed, 1e-9),
                "time/online_s": state["online_s"],
                "wall_s": elapsed,
                **update_stats,
                **{f"counters/{k}": v for k, v in ctx.counters.items()},
            }
            if ctx.llm_started:
                row.update({f"llm/{k}": v for k, v in ctx.llm.summary().items() if isinstance(v, (int, float))})
            recorder.row(env_steps, row)
            train_returns, train_metrics = [], []
            pbar.set_postfix(test_return=f"{final:.1f}", best=f"{state['best_return']:.1f}")
            state["stopped_early"] = tc.stop_return is not None and final >= tc.stop_return
            checkpoint_now()
            if env_steps < cfg.steps and not state["stopped_early"]:
                # Episodes restart here, in every run, so a run resumed from this checkpoint sees the
                # same env states as the uninterrupted one (seeding.py).
                learner.restart_episodes(seeding.episode_seeds(cfg.seed, env_steps, learner.n_train_envs()))
            epoch_start_steps, t0 = env_steps, time.perf_counter()
    pbar.close()
    if np.isnan(state["final_return"]):  # nothing trained (steps reached already) and never evaluated
        result = evaluate()
        state["final_return"] = float(result.returns.mean())
        state["best_return"] = max(float(state["best_return"]), state["final_return"])
        state["final_metrics"] = result.metrics
    learner.close()
    return {
        "env_steps": int(env_steps),
        "best_return": float(state["best_return"]),
        "final_return": float(state["final_return"]),
        "return_kind": learner.return_kind,
        "epochs": epoch,
        "episodes": int(state["episodes"]),
        "stopped_early": bool(state["stopped_early"]),
        "online_s": round(float(state["online_s"]), 3),
        "pretrain_steps": int(state["pretrain_steps"]),
        "demo_transitions": int(sum(len(d) for d in ctx.demos)),
        **{f"final_{k}": v for k, v in state["final_metrics"].items()},
    }


def test_seed_of(seed: int) -> int:
    """Test episode ``k`` of every evaluation of a run with ``seed`` is reset with ``test_seed_of(seed) + k``."""
    return 10_000 + 1000 * seed


def _test_row(result: Evaluation) -> dict[str, float]:
    return {
        "test/return": float(result.returns.mean()),
        "test/return_std": float(result.returns.std()),
        **{f"test/{k}": float(v) for k, v in result.metrics.items()},
    }


def _mean_metrics(prefix: str, metrics: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted(set().union(*metrics)) if metrics else []
    return {f"{prefix}/{k}": float(np.mean([m[k] for m in metrics if k in m])) for k in keys}


# -- what a checkpoint carries besides the learner ------------------------------------------------


def learner_state_of(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The learner's part of a checkpoint (checkpoints written before the one loop kept the networks
    under ``algorithm`` at the top level)."""
    if "learner" in checkpoint:
        return checkpoint["learner"]
    return {"algorithm": checkpoint["algorithm"], "updates": checkpoint.get("updates", 0)}


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


_DEMO_ARRAYS = ("obs", "act", "rew", "obs_next", "terminated", "truncated")


def demos_state(demos: list[Demonstrations]) -> list[dict[str, Any]]:
    """Demonstrations as tensors and plain values (``weights_only`` checkpoints refuse numpy arrays);
    ``meta`` keeps only JSON-able entries."""
    import json

    out = []
    for d in demos:
        meta = {}
        for k, v in d.meta.items():
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                continue
            meta[k] = v
        item: dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(getattr(d, k))) for k in _DEMO_ARRAYS}
        item.update(source=d.source, agent=d.agent, meta=json.dumps(meta))
        out.append(item)
    return out


def demos_from_state(items: list[dict[str, Any]]) -> list[Demonstrations]:
    import json

    return [
        Demonstrations(
            **{k: item[k].numpy() for k in _DEMO_ARRAYS}, source=item["source"], agent=item["agent"],
            meta=json.loads(item["meta"]),
        )
        for item in items
    ]


__all__ = ["demos_from_state", "demos_state", "learner_state_of", "run_epochs", "test_seed_of"]

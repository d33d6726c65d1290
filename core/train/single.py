"""The single-agent learner: a Tianshou algorithm (by name from ``ALGORITHMS``: PPO, DQN, SAC, ...), its
collectors and replay buffer, behind the one epoch loop (:mod:`guidedrl.train.loop`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm
from tianshou.data import Collector, ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step, torch_train_mode
from tqdm.auto import tqdm

from guidedrl.errors import ConfigError
from guidedrl.train import hooks
from guidedrl.guidance import imitation_loss
from guidedrl.train.algorithms import ALGORITHMS, apply_schedules, build_algorithm
from guidedrl.train.buffers import anneal_beta, make_replay_buffer
from guidedrl.train.collector import GuidedCollector
from guidedrl.train.learner import Collected, Evaluation
from guidedrl.train.vector import make_vector_env

if TYPE_CHECKING:
    from guidedrl.context import RunContext
    from guidedrl.types import Demonstrations


def evaluate(algorithm: Any, collector: Collector, episodes: int, seed: int) -> np.ndarray:
    """Returns of ``episodes`` test episodes with the deterministic policy."""
    collector.env.seed(seed)  # env i gets seed + i: distinct, reproducible test episodes
    collector.reset()
    with torch.no_grad(), torch_train_mode(algorithm.policy, enabled=False), policy_within_training_step(
        algorithm.policy, enabled=False
    ):
        stats = collector.collect(n_episode=episodes)
    return np.asarray(stats.returns, dtype=np.float64)


LOSS_NAMES = {
    "actor_loss": "losses/policy",
    "vf_loss": "losses/value",
    "ent_loss": "losses/entropy",
    "loss": "losses/total",
    "critic1_loss": "losses/critic1",
    "critic2_loss": "losses/critic2",
    "alpha": "losses/alpha",
    "alpha_loss": "losses/alpha_loss",
}
"""Tianshou's loss statistics under the names every run writes (multi-agent runs write the same)."""


def loss_stats(stats: Any) -> dict[str, float]:
    """A Tianshou ``TrainingStats`` as ``losses/*`` numbers (gradient-step counts left out)."""
    out = {}
    for key, value in stats.get_loss_stats_dict().items():
        if key != "gradient_steps":
            out[LOSS_NAMES.get(key, f"losses/{key}")] = float(value)
    return out


def method_replay_buffer(ctx: RunContext, size: int, num_envs: int) -> ReplayBuffer | None:
    """The replay buffer a method of the run supplies (off-policy runs): the first method, in the run's
    order, whose plugin has ``replay_buffer(ctx, size, num_envs)`` returning one (ACE: a
    :class:`~guidedrl.train.buffers.MixedReplayBuffer` with its LLM source); ``None``: the default."""
    for name in ctx.methods:
        make = getattr(ctx.pm.get_plugin(name), "replay_buffer", None)
        buffer = make(ctx, size, num_envs) if callable(make) else None
        if buffer is not None:
            return buffer
    return None


class TianshouLearner:
    """A guided Tianshou algorithm with a :class:`GuidedCollector`, a plain test collector and a
    replay buffer (the on-policy rollout, or the off-policy replay saved with each checkpoint)."""

    return_kind = "episode"

    def __init__(self, ctx: RunContext) -> None:
        cfg = ctx.config
        self.ctx = ctx
        self.hook_set = hooks.HookSet(ctx.pm)
        probe = ctx.adapter.make()
        try:
            algorithm, optim_attr = build_algorithm(cfg, probe, ctx.device)
        finally:
            probe.close()
        algorithm.attach_guidance(ctx, self.hook_set, optim_attr)
        self.algorithm = algorithm
        self.on_policy = isinstance(algorithm, OnPolicyAlgorithm)
        self.algo_cfg = ALGORITHMS.get(cfg.algo).settings(cfg)
        self.collector: GuidedCollector | None = None
        self.buffer: ReplayBuffer | None = None
        self._test: tuple[Any, Collector] | None = None

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm.state_dict(), "updates": int(getattr(self.algorithm, "_iter", 0))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        if hasattr(self.algorithm, "_iter"):
            self.algorithm._iter = int(state.get("updates", 0))  # DQN's count toward the next target-network sync

    def load_networks(self, state: dict[str, Any], source: str) -> None:
        """Only the networks of another run (not optimisers, not counters)."""
        algorithm = self.algorithm
        nets = {k: v for k, v in state["algorithm"].items() if not k.endswith(algorithm._STATE_DICT_KEY_OPTIMIZERS)}
        # nn.Module's loader, not Algorithm's (which expects optimiser states too).
        result = torch.nn.Module.load_state_dict(algorithm, nets, strict=False)
        if result.unexpected_keys or result.missing_keys:
            raise ConfigError(
                f"train.init_from: {source!r} holds a different network (e.g. {(result.unexpected_keys or result.missing_keys)[:3]}); "
                "use a run of the same env, algo and network sizes"
            )

    def replay_buffer(self) -> Any:
        return None if self.on_policy else self.buffer

    # -- training ------------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.ctx.config
        n = cfg.train.num_envs
        self.train_envs = make_vector_env(self.ctx.adapter, n, cfg.train.vector, seed=cfg.seed)
        size = self.algo_cfg.steps_per_collect if self.on_policy else self.algo_cfg.buffer_size
        self.buffer = method_replay_buffer(self.ctx, size, n) if not self.on_policy else None
        if self.buffer is None:
            self.buffer = make_replay_buffer(cfg, size, n)
        self.ctx.replay = None if self.on_policy else self.buffer
        self.collector = GuidedCollector(
            self.algorithm, self.train_envs, self.buffer, exploration_noise=True, ctx=self.ctx, hook_set=self.hook_set
        )
        self.collector.reset()

    def n_train_envs(self) -> int:
        return self.ctx.config.train.num_envs

    def pretrain(self, demos: list[Demonstrations], steps: int, progress: bool) -> dict[str, float]:
        """Offline behaviour cloning of ``demos`` into the policy (``guidedrl.guidance.imitation_loss``)."""
        cfg = self.ctx.config.pretrain
        obs = np.concatenate([d.obs for d in demos])
        act = np.concatenate([d.act for d in demos])
        policy = self.algorithm.policy
        params = list(policy.parameters())
        optim = torch.optim.Adam(params, lr=cfg.lr)
        losses = []
        for _ in tqdm(range(steps), desc="pretrain (imitation)", disable=not progress, leave=False):
            idx = self.ctx.rng.integers(len(obs), size=min(cfg.batch_size, len(obs)))
            loss = imitation_loss(policy, obs[idx], act[idx])
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            losses.append(float(loss.detach()))
        return {"pretrain/loss_first": losses[0], "pretrain/loss_last": float(np.mean(losses[-20:]))}

    def warmup(self) -> int:
        if self.on_policy or self.algo_cfg.start_steps <= 0:
            return 0
        stats = self.collector.collect(n_step=self.algo_cfg.start_steps, random=True)
        self.collector.pop_finished()
        self.collector.shape_new_transitions()  # the warm-up's transitions meet shape_reward too, once
        return int(stats.n_collected_steps)

    def collect(self, env_steps: int) -> Collected:
        apply_schedules(self.algorithm, self.ctx.config, env_steps)  # exploration for this collection
        with policy_within_training_step(self.algorithm.policy), torch.no_grad():
            stats = self.collector.collect(n_step=self.algo_cfg.steps_per_collect)
        self._collected = int(stats.n_collected_steps)
        return Collected(env_steps=self._collected, returns=[float(r) for r in stats.returns])

    def pop_finished(self) -> list[Any]:
        return self.collector.pop_finished()

    def cut_episodes(self) -> list[Any]:
        return self.collector.cut_running()

    def shape_rewards(self) -> dict[str, float]:
        """``shape_reward`` once on everything collected since the last call; each bonus is stored with
        its transition (``guidedrl.guidance``'s bonus column), so every later target uses it."""
        return self.collector.shape_new_transitions()

    def update(self, env_steps: int) -> dict[str, float]:
        algorithm, c, ctx = self.algorithm, self.algo_cfg, self.ctx
        apply_schedules(algorithm, ctx.config, env_steps)  # learning rate and clip range for this update
        anneal_beta(self.buffer, ctx.config, env_steps)  # prioritized replay's importance-sampling exponent
        with policy_within_training_step(algorithm.policy):
            # bonuses were stored with the transitions (shape_rewards): they stay in check_losses' view
            if self.on_policy:
                hooks.begin_update(ctx, keep_bonuses=True)
                stats = algorithm.update(buffer=self.buffer, batch_size=c.batch_size, repeat=c.repeat)
                hooks.check_losses(ctx, stats.get_loss_stats_dict())
                self.collector.reset_buffer(keep_statistics=True)
                hooks.begin_update(ctx)  # this rollout, and its bonuses, are gone
            else:
                n_updates = max(1, round(c.updates_per_step * self._collected))
                for _ in range(n_updates):
                    hooks.begin_update(ctx, keep_bonuses=True)
                    stats = algorithm.update(buffer=self.buffer, sample_size=c.batch_size)
                    hooks.check_losses(ctx, stats.get_loss_stats_dict())
        return {**loss_stats(stats), **algorithm.pop_guidance_stats()}

    def restart_episodes(self, seeds: list[int]) -> None:
        self.collector.restart_episodes(seeds)

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, episodes: int, seed: int) -> Evaluation:
        if self._test is None:
            cfg = self.ctx.config
            envs = make_vector_env(self.ctx.adapter, min(cfg.train.num_test_envs, episodes), "dummy", seed=seed)
            self._test = (envs, Collector(self.algorithm, envs))
        return Evaluation(returns=evaluate(self.algorithm, self._test[1], episodes, seed))

    def close(self) -> None:
        for envs in (getattr(self, "train_envs", None), self._test[0] if self._test else None):
            if envs is not None:
                envs.close()

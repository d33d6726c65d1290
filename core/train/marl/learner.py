"""The multi-agent learner: MAPPO (IPPO without the centralised critic) riding Tianshou.

A PettingZoo parallel env's agents are Tianshou sub-envs (:class:`~guidedrl.train.marl.envs.AgentVectorEnv`),
so collection (``Collector``), storage (``VectorReplayBuffer``), GAE and the PPO update are
Tianshou's. What is added here, and why:

- :class:`MultiAgentCollector` calls ``refine_action`` once per agent (hooks name the agent) and
  assembles one :class:`~guidedrl.types.Episode` per agent of each finished env episode.
- :class:`MAPPO` is :class:`~guidedrl.train.algorithms.GuidedPPO` whose update leaves absent agents'
  padding steps out after GAE, calls ``update_policy`` per agent, clips actor and critic gradients
  separately (as MAPPO does; Tianshou clips them together) and measures ``approx_kl`` / ``clipfrac``.
- :meth:`MultiAgentLearner.evaluate` is a short loop of its own: Tianshou's episode counting is per
  sub-env (per agent), and test returns are per env episode (team returns).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.modelfree.ppo import PPO
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from guidedrl.errors import ConfigError
from guidedrl.train import hooks
from guidedrl.train.algorithms import GuidedPPO
from guidedrl.train.collector import GuidedCollector
from guidedrl.train.learner import Collected, Evaluation
from guidedrl.train.marl.envs import AgentVectorEnv, ObsLayout
from guidedrl.train.marl.nets import MultiAgentActor, MultiAgentCritic, MultiAgentPolicy
from guidedrl.types import Episode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from guidedrl.config import MARLConfig
    from guidedrl.context import RunContext
    from guidedrl.types import Demonstrations


RETURN_KIND = "team (sum over agents per episode, mean over test episodes)"


def env_spec(env: Any) -> tuple[list[str], list[int], list[int], list[tuple[int, ...]]]:
    """Agents, flat observation sizes, action counts and observation shapes of a PettingZoo parallel
    env (Box observations, Discrete actions)."""
    agents = list(env.possible_agents)
    dims, acts, shapes = [], [], []
    for a in agents:
        ospace, aspace = env.observation_space(a), env.action_space(a)
        if not isinstance(ospace, gym.spaces.Box):
            raise ConfigError(f"multi-agent runner: agent {a!r} has a {type(ospace).__name__} observation space; it needs a Box")
        if not isinstance(aspace, gym.spaces.Discrete):
            raise ConfigError(
                f"multi-agent runner: agent {a!r} has a {type(aspace).__name__} action space; MAPPO here takes "
                "Discrete actions (for MPE envs pass continuous_actions=False)"
            )
        dims.append(int(np.prod(ospace.shape)))
        acts.append(int(aspace.n))
        shapes.append(tuple(ospace.shape))
    return agents, dims, acts, shapes


# ---------------------------------------------------------------------------------------------
# the algorithm


class _AgentOptimizer:
    """The optimiser step of :class:`MAPPO`: adds every agent's ``update_policy`` terms to the loss,
    stops on a non-finite loss, and clips actor and critic gradients separately."""

    def __init__(self, inner: Any, algo: MAPPO, max_grad_norm: float) -> None:
        self._inner = inner  # Tianshou's Algorithm.Optimizer (its torch optimiser: ._optim)
        self._algo = algo
        self._max = max_grad_norm

    def step(self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        algo = self._algo
        ctx = algo._guided_ctx
        for agent, batch in algo._agent_batches.items():
            extra, stats = hooks.update_policy(ctx, batch, algo, agent=agent)
            if extra is not None:
                loss = loss + extra
            for key, value in stats.items():  # methods/<plugin>/<agent>/<stat> (hooks.update_policy names them)
                algo._guided_stats.setdefault(key, []).append(value)
        if not torch.isfinite(loss):
            hooks.check_losses(ctx, {"losses/total": float(loss.detach())})
        optim = self._inner._optim
        optim.zero_grad()
        loss.backward(retain_graph=retain_graph, create_graph=create_graph)
        nn.utils.clip_grad_norm_(algo.policy.actor.parameters(), self._max)
        nn.utils.clip_grad_norm_(algo.critic.parameters(), self._max)
        optim.step()
        algo.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return self._inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._inner.load_state_dict(state)


class MAPPO(GuidedPPO):
    """Tianshou's PPO over the multi-agent actor and critic (``policy``: :class:`MultiAgentPolicy`,
    ``critic``: :class:`MultiAgentCritic`), with per-agent guidance and the alive mask."""

    policy: MultiAgentPolicy
    critic: MultiAgentCritic

    def __init__(self, *, policy: MultiAgentPolicy, critic: MultiAgentCritic, cfg: MARLConfig) -> None:
        super().__init__(
            policy=policy,
            critic=critic,
            optim=AdamOptimizerFactory(lr=cfg.lr, eps=1e-5),
            eps_clip=cfg.eps_clip,
            vf_coef=0.5 * cfg.vf_coef,  # marl.vf_coef weighs ½·MSE (MAPPO's value loss); Tianshou's weighs the MSE
            ent_coef=cfg.ent_coef,
            max_grad_norm=None,  # clipped per network by _AgentOptimizer
            gae_lambda=cfg.gae_lambda,
            gamma=cfg.gamma,
            advantage_normalization=False,  # over the whole batch of live, unadvised steps instead
            max_batchsize=4096,
        )
        self.layout = policy.actor.layout
        self.agents = policy.agents
        self.updates = 0
        self._agent_batches: dict[str, Batch] = {}
        self._last_stats: dict[str, float] = {}

    def attach(self, ctx: RunContext, hook_set: hooks.HookSet, max_grad_norm: float) -> None:
        self._guided_ctx = ctx
        self._guided_hooks = hook_set
        self._guided_stats = {}
        self._guided_normalise = True  # read by GuidedAlgorithmMixin._exclude_advised
        self.optim = _AgentOptimizer(self.optim, self, max_grad_norm)

    def agent_rows(self, buffer: Any, indices: np.ndarray) -> list[np.ndarray]:
        """For each agent, the positions in ``indices`` of its transitions, time-major over envs."""
        offsets = np.asarray(buffer._offset)
        sub = np.searchsorted(offsets, indices, side="right") - 1
        pos = indices - offsets[sub]
        n = self.layout.n_agents
        out = []
        for i in range(n):
            rows = np.flatnonzero(sub % n == i)
            out.append(rows[np.lexsort((sub[rows] // n, pos[rows]))])
        return out

    def agent_batch(self, batch: Batch, rows: np.ndarray, logp_old: Any) -> Batch:
        """One agent's transitions as hooks see them: own observations, env-space actions, flags."""
        own = self.layout.own
        np_ = lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)  # noqa: E731
        obs = np_(batch.obs)[rows]
        advised = batch.policy.get("advised", None) if "policy" in batch.get_keys() else None
        return Batch(
            obs=obs[:, own], act=np_(batch.act)[rows].astype(np.int64), rew=np_(batch.rew)[rows],
            obs_next=np_(batch.obs_next)[rows][:, own], terminated=np_(batch.terminated)[rows],
            truncated=np_(batch.truncated)[rows], done=np_(batch.done)[rows],
            policy=Batch(
                advised=np.zeros(len(rows), bool) if advised is None else np_(advised)[rows].astype(bool),
                alive=obs[:, self.layout.alive_col] > 0.5,
                logp_old=np_(logp_old)[rows],
            ),
        )

    def _preprocess_batch(self, batch: Any, buffer: Any, indices: np.ndarray) -> Any:
        batch = PPO._preprocess_batch(self, batch, buffer, indices)  # Tianshou's GAE and logp_old
        if self._guided_hooks.update_policy:
            self._agent_batches = {
                a: self.agent_batch(batch, rows, batch.logp_old)
                for a, rows in zip(self.agents, self.agent_rows(buffer, indices), strict=True)
            }
        alive = np.asarray(batch.obs[:, self.layout.alive_col]) > 0.5
        batch = batch[np.flatnonzero(alive)]  # absent agents' padding steps are not trained on
        self._exclude_advised(batch)  # normalise advantages over own steps; advised steps get 0
        self._guided_batch = batch
        return batch

    def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> Any:
        stats = super()._update_with_batch(batch, batch_size, repeat)
        with torch.no_grad():  # how far the update moved the policy on its batch
            logp = torch.cat([
                self.policy(mb).dist.log_prob(mb.act) for mb in batch.split(self.max_batchsize, shuffle=False, merge_last=True)
            ])
            ratio = torch.exp(logp - batch.logp_old)
            self._last_stats = {
                "losses/approx_kl": float(((ratio - 1) - torch.log(ratio)).mean()),
                "losses/clipfrac": float(((ratio - 1).abs() > self.eps_clip).float().mean()),
            }
        self._agent_batches = {}
        return stats


# ---------------------------------------------------------------------------------------------
# collection


class MultiAgentCollector(GuidedCollector):
    """Tianshou's collector over :class:`AgentVectorEnv` with per-agent ``refine_action`` and per-agent
    episodes for ``identify_critical_states``."""

    env: AgentVectorEnv
    lean_steps = False  # Tianshou's own loop: the joint-step layout was not checked against the lean one

    def __init__(self, *args: Any, obs_shapes: Sequence[tuple[int, ...]], **kwargs: Any) -> None:
        self._obs_shapes = list(obs_shapes)
        self._partial_ma: dict[tuple[int, int], dict[str, Any]] = {}
        self._left: dict[int, list[tuple[int, Episode]]] = {}
        super().__init__(*args, **kwargs)
        env0 = self.env.envs[0]
        self._agent_spaces = [env0.action_space(a) for a in self.env.agents]

    def _compute_action_policy_hidden(
        self, random: bool, ready_env_ids_R: np.ndarray, last_obs_RO: np.ndarray, last_info_R: np.ndarray,
        last_hidden_state_RH: Any = None,
    ) -> Any:
        self._ready_ids = ready_env_ids_R
        out = Collector._compute_action_policy_hidden(
            self, random, ready_env_ids_R, last_obs_RO, last_info_R, last_hidden_state_RH
        )
        advised = np.zeros(len(ready_env_ids_R), dtype=bool)
        if self.hook_set.refine_action and not random:
            env, lay = self.env, self.env.layout
            obs = np.asarray(last_obs_RO)
            env_act = np.array(out.act_normalized, copy=True)
            for i, agent in enumerate(env.agents):
                rows = np.flatnonzero(ready_env_ids_R % env.n_agents == i)
                if not len(rows):
                    continue
                env_ids = ready_env_ids_R[rows] // env.n_agents
                info = [env.infos[e].get(agent, {}) for e in env_ids.tolist()]
                advice = hooks.refine_action(
                    self.ctx, obs[rows][:, lay.own], env_act[rows].copy(), info, env_ids, agent=agent,
                    action_space=self._agent_spaces[i],
                )
                if advice is not None:
                    m = advice.mask & (obs[rows, lay.alive_col] > 0.5)
                    env_act[rows[m]] = np.asarray(advice.act).reshape(-1)[m]
                    advised[rows[m]] = True
            if advised.any():
                out.act_normalized = env_act
                out.act = self.policy.map_action_inverse(env_act)
        policy_entry = out.policy_entry if isinstance(out.policy_entry, Batch) else Batch()
        policy_entry.advised = advised
        out.policy_entry = policy_entry
        return out

    def _record_step(self, action_batch: Any, step: Any) -> None:
        """Append one joint step to every live agent's trajectory; when an env's episode ends, one
        :class:`Episode` per agent that took part goes to :attr:`finished` (in agent order). Rewards
        are the env's (before ``shape_reward``)."""
        env, lay = self.env, self.env.layout
        ids = np.asarray(self._ready_ids)
        act = np.asarray(action_batch.act_normalized)
        obs, obs_next = np.asarray(step.obs), np.asarray(step.obs_next)
        start = self.ctx.env_steps + self._steps_seen
        for r, k in enumerate(ids.tolist()):
            e, i = divmod(k, env.n_agents)
            if obs[r, lay.alive_col] > 0.5:
                part = self._partial_ma.get((e, i))
                if part is None:
                    part = self._partial_ma[(e, i)] = {"obs": [], "act": [], "rew": [], "obs_next": [], "start": start}
                part["obs"].append(obs[r, lay.own])
                part["act"].append(int(act[r]))
                part["rew"].append(float(step.rew[r]))
                part["obs_next"].append(obs_next[r, lay.own])
                if step.done[r]:
                    del self._partial_ma[(e, i)]
                    shape = self._obs_shapes[i]
                    size = int(np.prod(shape))
                    t = len(part["rew"])
                    ep = Episode(
                        obs=np.stack(part["obs"])[:, :size].reshape(t, *shape),
                        act=np.asarray(part["act"], dtype=np.int64),
                        rew=np.asarray(part["rew"], dtype=np.float64),
                        obs_next=np.stack(part["obs_next"])[:, :size].reshape(t, *shape),
                        terminated=bool(step.terminated[r]),
                        env_id=e,
                        start_step=part["start"],
                        agent=env.agents[i],
                    )
                    self._left.setdefault(e, []).append((i, ep))
            if i == env.n_agents - 1 and env.env_done[e]:
                closed = sorted(self._left.pop(e, []), key=lambda item: item[0])
                self.finished.extend(ep for _, ep in closed)
        self._steps_seen += len(ids) // env.n_agents

    def cut_running(self) -> list[Episode]:
        """The env episodes in progress as per-agent trajectory chunks that end here
        (``terminated=False``; agents that already left keep their own end), env by env in agent
        order; forgotten afterwards (the loop restarts every env right after)."""
        env = self.env
        by_env: dict[int, list[tuple[int, Episode]]] = {e: list(v) for e, v in self._left.items()}
        for (e, i), part in self._partial_ma.items():
            shape = self._obs_shapes[i]
            size, t = int(np.prod(shape)), len(part["rew"])
            by_env.setdefault(e, []).append((i, Episode(
                obs=np.stack(part["obs"])[:, :size].reshape(t, *shape), act=np.asarray(part["act"], dtype=np.int64),
                rew=np.asarray(part["rew"], dtype=np.float64), obs_next=np.stack(part["obs_next"])[:, :size].reshape(t, *shape),
                terminated=False, env_id=e, start_step=part["start"], agent=env.agents[i],
            )))
        self._partial_ma.clear()
        self._left.clear()
        return [ep for e in sorted(by_env) for _, ep in sorted(by_env[e], key=lambda item: item[0])]

    def restart_episodes(self, seeds: list[int]) -> None:
        """End the episodes in progress and reset every env with ``seeds`` (one per env); the loop has
        handed the episodes in progress to ``identify_critical_states`` already (:meth:`cut_running`);
        they do not count as finished."""
        self.env.seed(seeds)
        self.reset_env()
        self.env.pop_finished()
        self._partial_ma.clear()
        self._left.clear()


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_policy(
    policy: MultiAgentPolicy, env: AgentVectorEnv, *, episodes: int, seed: int, deterministic: bool = True
) -> Evaluation:
    """Team returns (sum over agents per env episode) and mean env metrics of ``episodes`` episodes;
    episode ``k`` is reset with seed ``seed + k``."""
    returns: list[float] = []
    metrics: list[dict[str, float]] = []
    na, lay = env.n_agents, env.layout
    for start in range(0, episodes, env.n):
        k = min(env.n, episodes - start)
        active = list(range(k))
        for e in active:
            env._seeds[e] = seed + start + e
            env._reset_env(e)
        env.pop_finished()
        while active:
            ids = np.concatenate([np.arange(e * na, (e + 1) * na) for e in active])
            flat = lay.flat(env.joint, env.alive).reshape(env.env_num, -1)[ids]
            logits, _ = policy.actor(flat)
            act = logits.argmax(-1) if deterministic else torch.distributions.Categorical(logits=logits).sample()
            env.step(act.cpu().numpy(), ids)
            for e, ret, _, m in env.pop_finished():
                returns.append(ret)
                metrics.append(m)
                active.remove(e)
    keys = sorted(set().union(*metrics)) if metrics else []
    return Evaluation(
        returns=np.asarray(returns, dtype=np.float64),
        metrics={k: float(np.mean([m[k] for m in metrics if k in m])) for k in keys},
    )


# ---------------------------------------------------------------------------------------------
# the learner


class MultiAgentLearner:
    """MAPPO on a PettingZoo parallel env, behind :class:`guidedrl.train.learner.Learner`.

    ``algorithm`` (``ctx.algorithm``) is :class:`MAPPO`: ``.policy`` the actors (``.logits(obs, agent)``,
    ``.log_prob(obs, act, agent)``, ``.agents``, ``.obs_dim``), ``.critic`` the critic.
    """

    on_policy = True
    return_kind = RETURN_KIND

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.config.marl
        probe = ctx.make_env()
        try:
            agents, dims, acts, shapes = env_spec(probe)
        finally:
            if hasattr(probe, "close"):
                probe.close()
        self.agents = agents
        self.obs_shapes = shapes
        self.layout = ObsLayout(len(agents), max(dims), joint=self.cfg.centralized_critic)
        self.algorithm = build_mappo(self.layout, agents, acts, self.cfg, ctx.device)
        self.hook_set = hooks.HookSet(ctx.pm)
        self.algorithm.attach(ctx, self.hook_set, self.cfg.max_grad_norm)
        tc = ctx.config.train
        self.n_envs = tc.num_envs
        self.t = max(1, self.cfg.steps_per_collect // self.n_envs)
        self.train_env: AgentVectorEnv | None = None
        self.test_env: AgentVectorEnv | None = None
        self.collector: MultiAgentCollector | None = None
        self.buffer: VectorReplayBuffer | None = None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        algo = self.algorithm
        return {"algorithm": {
            "policy": algo.policy.actor.state_dict(), "critic": algo.critic.state_dict(),
            "optim": algo.optim.state_dict(), "updates": algo.updates,
        }}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_networks(state, "the checkpoint")
        self.algorithm.optim.load_state_dict(state["algorithm"]["optim"])
        self.algorithm.updates = int(state["algorithm"].get("updates", 0))

    def load_networks(self, state: dict[str, Any], source: str) -> None:
        algo, nets = self.algorithm, state.get("algorithm", {})
        if not isinstance(nets, dict) or "policy" not in nets or "critic" not in nets:
            raise ConfigError(f"train.init_from = {source!r} is not a multi-agent run's checkpoint")
        try:
            algo.policy.actor.load_state_dict(nets["policy"])
            algo.critic.load_state_dict(nets["critic"])
        except RuntimeError as exc:  # torch's missing-key / size-mismatch message
            raise ConfigError(
                f"train.init_from: {source!r} holds a different network ({str(exc).splitlines()[0][:200]}); "
                "use a run with the same agents, observation sizes and marl settings"
            ) from None

    def replay_buffer(self) -> None:
        return None

    # -- training -----------------------------------------------------------------------------
    def start(self) -> None:
        ctx, n = self.ctx, self.n_envs
        self.train_env = AgentVectorEnv(ctx.make_env, n, self.agents, self.layout)
        self.train_env.seed([ctx.config.seed * 1000 + e for e in range(n)])
        size = self.t * n * len(self.agents)
        self.buffer = VectorReplayBuffer(size, n * len(self.agents))
        self.collector = MultiAgentCollector(
            self.algorithm, self.train_env, self.buffer, ctx=ctx, hook_set=self.hook_set, obs_shapes=self.obs_shapes,
        )
        self.collector.reset()

    def pretrain(self, demos: list[Demonstrations], steps: int, progress: bool) -> dict[str, float]:
        """Behaviour cloning of each actor on its agent's demonstrations (``imitation_loss`` per agent),
        and regression of the critic on the demonstrations' discounted returns (``marl.pretrain_critic``)
        where every agent's transitions of a source are aligned in time."""
        from tqdm.auto import tqdm

        from guidedrl.guidance import imitation_loss

        algo, cfg, dev = self.algorithm, self.ctx.config, self.ctx.device
        obs_l, act_l, idx_l = [], [], []
        d_max = self.layout.obs_dim
        for d in demos:
            if d.agent is None or d.agent not in self.agents:
                continue
            o = np.asarray(d.obs, dtype=np.float32).reshape(len(d), -1)
            pad = np.zeros((len(d), d_max), dtype=np.float32)
            pad[:, : o.shape[1]] = o
            obs_l.append(pad)
            act_l.append(np.asarray(d.act, dtype=np.int64).reshape(-1))
            idx_l.append(np.full(len(d), self.agents.index(d.agent), dtype=np.int64))
        if not obs_l:
            return {}
        obs = torch.as_tensor(np.concatenate(obs_l), device=dev)
        act = torch.as_tensor(np.concatenate(act_l), device=dev)
        idx = np.concatenate(idx_l)
        c_in, c_ret = self._critic_targets(demos, self.cfg.gamma) if self.cfg.pretrain_critic else (None, None)
        params = [*algo.policy.actor.parameters(), *algo.critic.parameters()]
        opt = torch.optim.Adam(params, lr=cfg.pretrain.lr)
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        bs = cfg.pretrain.batch_size
        stats: dict[str, float] = {}
        for step in tqdm(range(steps), desc="pretrain (imitation)", disable=not progress, leave=False):
            b = torch.randint(0, len(act), (min(bs, len(act)),), generator=gen).numpy()
            bc = torch.zeros((), device=dev)
            for i, agent in enumerate(self.agents):
                sel = b[idx[b] == i]
                if len(sel):
                    bc = bc + imitation_loss(algo.policy, obs[sel], act[sel], agent=agent) * (len(sel) / len(b))
            loss = bc
            if c_in is not None:
                cb = torch.randint(0, len(c_ret), (min(bs, len(c_ret)),), generator=gen).to(dev)
                vloss = 0.5 * (algo.critic(c_in[cb]) - c_ret[cb]).pow(2).mean()
                loss = loss + self.cfg.vf_coef * vloss
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step == steps - 1 or step % 100 == 0:
                with torch.no_grad():
                    pred = algo.policy.actor.own_logits(obs[b], torch.as_tensor(idx[b], device=dev)).argmax(-1)
                    acc = (pred == act[b]).float().mean()
                stats = {"pretrain/bc_loss": float(bc.detach()), "pretrain/accuracy": float(acc)}
                if c_in is not None:
                    stats["pretrain/value_loss"] = float(vloss.detach())
        return stats

    def _critic_targets(self, demos: Sequence[Demonstrations], gamma: float) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        by_source: dict[str, dict[str, Demonstrations]] = {}
        for d in demos:
            if d.agent in self.agents:
                by_source.setdefault(d.source, {})[d.agent] = d
        n, dmax = len(self.agents), self.layout.obs_dim
        ins, rets = [], []
        for group in by_source.values():
            if set(group) != set(self.agents) or len({len(d) for d in group.values()}) != 1:
                continue
            t = len(next(iter(group.values())))
            joint = np.zeros((t, n, dmax), dtype=np.float32)
            ret = np.zeros((t, n), dtype=np.float32)
            for i, a in enumerate(self.agents):
                d = group[a]
                o = np.asarray(d.obs, dtype=np.float32).reshape(t, -1)
                joint[:, i, : o.shape[1]] = o
                end = np.asarray(d.terminated, bool) | np.asarray(d.truncated, bool)
                g = 0.0
                for k in range(t - 1, -1, -1):
                    g = float(d.rew[k]) + (0.0 if end[k] else gamma * g)
                    ret[k, i] = g
            ins.append(self.layout.flat(joint, np.ones((t, n), dtype=bool)).reshape(t * n, -1))
            rets.append(ret.reshape(-1))
        if not ins:
            return None, None
        dev = self.ctx.device
        return torch.as_tensor(np.concatenate(ins), device=dev), torch.as_tensor(np.concatenate(rets), device=dev)

    def warmup(self) -> int:
        return 0

    def collect(self, env_steps: int) -> Collected:
        assert self.collector is not None and self.train_env is not None, "start() first"
        n_agents = len(self.agents)
        with policy_within_training_step(self.algorithm.policy), torch.no_grad():
            stats = self.collector.collect(n_step=self.t * self.n_envs * n_agents)
        finished = self.train_env.pop_finished()
        return Collected(
            env_steps=int(stats.n_collected_steps) // n_agents,
            returns=[ret for _, ret, _, _ in finished],
            metrics=[m for *_, m in finished],
        )

    def pop_finished(self) -> list[Episode]:
        assert self.collector is not None
        return self.collector.pop_finished()

    def cut_episodes(self) -> list[Episode]:
        assert self.collector is not None
        return self.collector.cut_running()

    def shape_rewards(self) -> dict[str, float]:
        """``shape_reward`` per agent on the collected transitions (its own rows, time-major over envs);
        bonuses of absent agents' padding steps are dropped."""
        hooks.begin_update(self.ctx)  # what methods put into this update, for check_losses
        stats: dict[str, float] = {}
        if not self.hook_set.shape_reward:
            return stats
        algo, buffer = self.algorithm, self.buffer
        indices = buffer.sample_indices(0)
        batch = buffer[indices]
        with torch.no_grad():
            logits, _ = algo.policy.actor(batch.obs)
            logp = torch.distributions.Categorical(logits=logits).log_prob(
                torch.as_tensor(np.asarray(batch.act), device=logits.device)
            ).cpu().numpy()
        for agent, rows in zip(self.agents, algo.agent_rows(buffer, indices), strict=True):
            ab = algo.agent_batch(batch, rows, logp)
            bonus = hooks.shape_reward(self.ctx, ab, agent=agent)
            if bonus is not None:
                bonus = bonus.astype(np.float32) * ab.policy.alive
                buffer.rew[indices[rows]] += bonus
                stats[f"train/shaping_{agent}"] = float(bonus.mean())
        return stats

    def update(self, env_steps: int) -> dict[str, float]:
        algo, cfg = self.algorithm, self.cfg
        with policy_within_training_step(algo.policy):
            res = algo.update(buffer=self.buffer, batch_size=cfg.batch_size, repeat=cfg.repeat)
        self.collector.reset_buffer(keep_statistics=True)
        stats = {
            "losses/policy": float(res.actor_loss.mean),
            "losses/value": float(res.vf_loss.mean),
            "losses/entropy": float(res.ent_loss.mean),
            **algo._last_stats,
        }
        hooks.check_losses(self.ctx, stats)
        return {**stats, **algo.pop_guidance_stats()}

    def restart_episodes(self, seeds: list[int]) -> None:
        assert self.collector is not None
        self.collector.restart_episodes(seeds)

    def n_train_envs(self) -> int:
        return self.n_envs

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, episodes: int, seed: int) -> Evaluation:
        if self.test_env is None:
            n = max(1, min(self.ctx.config.train.num_test_envs, episodes))
            self.test_env = AgentVectorEnv(self.ctx.make_env, n, self.agents, self.layout)
        return evaluate_policy(
            self.algorithm.policy, self.test_env, episodes=episodes, seed=seed, deterministic=self.cfg.deterministic_eval
        )

    def close(self) -> None:
        for env in (self.train_env, self.test_env):
            if env is not None:
                env.close()


def build_mappo(layout: ObsLayout, agents: Sequence[str], n_actions: Sequence[int], cfg: MARLConfig, device: torch.device) -> MAPPO:
    """The actors, critic and Tianshou PPO of a multi-agent run."""
    actor = MultiAgentActor(agents, layout, n_actions, cfg.hidden, cfg.share_parameters).to(device)
    critic = MultiAgentCritic(layout, cfg.hidden, cfg.centralized_critic).to(device)
    policy = MultiAgentPolicy(actor, gym.spaces.Discrete(max(n_actions)), deterministic_eval=True)
    return MAPPO(policy=policy, critic=critic, cfg=cfg)


__all__ = ["MAPPO", "MultiAgentCollector", "MultiAgentLearner", "build_mappo", "evaluate_policy", "RETURN_KIND"]

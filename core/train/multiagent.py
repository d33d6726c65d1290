"""Multi-agent PPO (MAPPO; IPPO without the centralised critic) on PettingZoo parallel envs.

Tianshou 2's multi-agent support targets turn-based AEC envs with no centralised critic, so this is a
compact MAPPO written here, CleanRL-style: networks, rollout, GAE, update and evaluation in one file.

- **Actors are decentralised**: each agent acts on its own observation; with ``marl.share_parameters``
  one network serves every agent and the agent's one-hot id is appended to its observation.
- **The critic is centralised** (``marl.centralized_critic``, CTDE): it sees the joint observation
  (every agent's observation, concatenated) plus the agent's id, and predicts that agent's value.
- **Returns** are per agent (each agent's own rewards); the *team return* reported in metrics and the
  summary is the sum of all agents' rewards over an episode, averaged over test episodes.
- **Hooks** (through :mod:`guidedrl.train.hooks`, always with ``agent=``): ``generate_demonstrations``
  before training, then behaviour cloning of the actors (and the critic on the demonstrations'
  returns) when ``pretrain.steps`` > 0 or a demonstration set asks for it (``meta["pretrain_steps"]``);
  ``refine_action`` per agent during collection (advised steps are kept out of the PPO ratio);
  ``shape_reward`` per agent before advantages; ``update_policy`` per agent at every optimiser step;
  ``identify_critical_states`` after each collection with one :class:`~guidedrl.types.Episode` per
  agent of every env episode that finished (``Episode.agent`` names the agent), before shaping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from guidedrl.errors import ConfigError
from guidedrl.train import hooks
from guidedrl.train.learner import Collected, Evaluation
from guidedrl.types import Episode

if TYPE_CHECKING:
    from guidedrl.config import MARLConfig
    from guidedrl.context import RunContext
    from guidedrl.types import Demonstrations


# ---------------------------------------------------------------------------------------------
# networks


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        lin = nn.Linear(last, h)
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
        last = h
    out = nn.Linear(last, out_dim)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


class MultiAgentActor(nn.Module):
    """Decentralised actors: ``logits(own observation, agent index)``.

    Shared: one network whose input is the observation plus the agent's one-hot id. Not shared: one
    network per agent. Agents with fewer actions than the largest action space have the missing
    actions masked out.
    """

    def __init__(
        self, agents: Sequence[str], obs_dim: int, n_actions: Sequence[int], hidden: Sequence[int], share: bool
    ) -> None:
        super().__init__()
        self.agents = list(agents)
        self.n_agents = len(self.agents)
        self.obs_dim = obs_dim
        self.share = share
        self.n_actions = max(n_actions)
        mask = torch.zeros(self.n_agents, self.n_actions, dtype=torch.bool)
        for i, n in enumerate(n_actions):
            mask[i, n:] = True
        self.register_buffer("invalid", mask)
        if share:
            self.net = _mlp(obs_dim + self.n_agents, hidden, self.n_actions, 0.01)
        else:
            self.nets = nn.ModuleList(_mlp(obs_dim, hidden, self.n_actions, 0.01) for _ in self.agents)

    def index(self, agent: str | int) -> int:
        return agent if isinstance(agent, int) else self.agents.index(agent)

    def forward(self, obs: torch.Tensor, agent_idx: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(B, n_actions)``, for observations ``(B, obs_dim)`` of agents ``(B,)``."""
        if self.share:
            onehot = nn.functional.one_hot(agent_idx, self.n_agents).to(obs.dtype)
            logits = self.net(torch.cat([obs, onehot], dim=-1))
        else:
            logits = obs.new_empty(obs.shape[0], self.n_actions)
            for i, net in enumerate(self.nets):
                sel = agent_idx == i
                if bool(sel.any()):
                    logits[sel] = net(obs[sel])
        return logits.masked_fill(self.invalid[agent_idx], -1e9)

    def logits(self, obs: torch.Tensor, agent: str | int) -> torch.Tensor:
        """Logits of one agent for a batch of its observations."""
        idx = torch.full((obs.shape[0],), self.index(agent), dtype=torch.long, device=obs.device)
        return self(obs, idx)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor, agent: str | int) -> torch.Tensor:
        """``log π(act | obs)`` for one agent (what an imitation or expert loss needs)."""
        logp = torch.log_softmax(self.logits(obs, agent), dim=-1)
        return logp.gather(-1, act.long().view(-1, 1)).squeeze(-1)


class MultiAgentCritic(nn.Module):
    """``V(input, agent)``: input is the joint observation (CTDE) or the agent's own observation."""

    def __init__(self, n_agents: int, obs_dim: int, hidden: Sequence[int], centralized: bool) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.centralized = centralized
        in_dim = (n_agents * obs_dim if centralized else obs_dim) + n_agents
        self.net = _mlp(in_dim, hidden, 1, 1.0)

    def inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """Critic inputs for every agent from joint observations ``(..., N, D)`` → ``(..., N, X)``."""
        n = self.n_agents
        eye = torch.eye(n, dtype=obs.dtype, device=obs.device).expand(*obs.shape[:-2], n, n)
        if self.centralized:
            joint = obs.reshape(*obs.shape[:-2], 1, -1).expand(*obs.shape[:-2], n, n * obs.shape[-1])
            return torch.cat([joint, eye], dim=-1)
        return torch.cat([obs, eye], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


# ---------------------------------------------------------------------------------------------
# environments


class ParallelEnvPool:
    """``n`` PettingZoo parallel envs stepped in turn, auto-reset, with arrays ``(n, N, D)``.

    Agents absent from an env (not yet spawned, or done before the others) are marked not alive; their
    observations are zeros and their actions are not sent.
    """

    def __init__(self, make: Callable[[], Any], n: int, agents: Sequence[str], obs_dim: int, seed: int) -> None:
        self.envs = [make() for _ in range(n)]
        self.agents = list(agents)
        self.obs_dim = obs_dim
        self.seed = seed
        self.n = n
        self.obs = np.zeros((n, len(self.agents), obs_dim), dtype=np.float32)
        self.alive = np.zeros((n, len(self.agents)), dtype=bool)
        self.infos: list[dict[str, Any]] = [{} for _ in range(n)]
        self.ep_return = np.zeros(n)
        self.ep_len = np.zeros(n, dtype=np.int64)

    def _write(self, e: int, obs: dict[str, Any], live: Sequence[str]) -> None:
        self.obs[e] = 0.0
        self.alive[e] = False
        for i, a in enumerate(self.agents):
            if a in obs and a in live:
                o = np.asarray(obs[a], dtype=np.float32).reshape(-1)
                self.obs[e, i, : o.size] = o
                self.alive[e, i] = True

    def reset(self, seeds: Sequence[int] | None = None) -> None:
        for e, env in enumerate(self.envs):
            s = self.seed + e if seeds is None else seeds[e]
            obs, infos = env.reset(seed=int(s))
            self._write(e, obs, env.agents)
            self.infos[e] = infos
        self.ep_return[:] = 0.0
        self.ep_len[:] = 0

    def step(self, actions: np.ndarray) -> dict[str, Any]:
        """Step every env with ``actions (n, N)``; finished envs reset. Returns arrays of the step."""
        n, na = self.n, len(self.agents)
        rew = np.zeros((n, na), dtype=np.float32)
        term = np.zeros((n, na), dtype=bool)
        trunc = np.zeros((n, na), dtype=bool)
        obs_next = np.zeros_like(self.obs)
        env_done = np.zeros(n, dtype=bool)
        finished: list[tuple[int, float, int, dict[str, Any]]] = []
        was_alive = self.alive.copy()
        for e, env in enumerate(self.envs):
            act = {a: int(actions[e, i]) for i, a in enumerate(self.agents) if was_alive[e, i]}
            obs, r, te, tr, infos = env.step(act)
            for i, a in enumerate(self.agents):
                if not was_alive[e, i]:
                    continue
                rew[e, i] = r.get(a, 0.0)
                term[e, i] = bool(te.get(a, False))
                trunc[e, i] = bool(tr.get(a, False))
                if a in obs:
                    o = np.asarray(obs[a], dtype=np.float32).reshape(-1)
                    obs_next[e, i, : o.size] = o
            self.ep_return[e] += float(rew[e].sum())
            self.ep_len[e] += 1
            live = env.agents
            self._write(e, obs, live)
            self.infos[e] = infos
            if not live:
                env_done[e] = True
                finished.append((e, float(self.ep_return[e]), int(self.ep_len[e]), infos))
                obs, infos = env.reset()
                self._write(e, obs, env.agents)
                self.infos[e] = infos
                self.ep_return[e] = 0.0
                self.ep_len[e] = 0
        # an agent that left the episode early (or whose env reset) ends its trajectory here
        end = term | trunc | (env_done[:, None] & was_alive)
        return {
            "rew": rew, "term": term, "trunc": trunc & ~term, "end": end, "obs_next": obs_next,
            "env_done": env_done, "finished": finished, "was_alive": was_alive,
        }

    def close(self) -> None:
        for env in self.envs:
            try:
                env.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def episode_metrics(infos: dict[str, Any]) -> dict[str, float]:
    """Numbers an env reports under ``info[agent]["metrics"]`` (first agent that has them)."""
    for info in infos.values():
        if isinstance(info, dict) and isinstance(info.get("metrics"), dict):
            return {k: float(v) for k, v in info["metrics"].items() if isinstance(v, (int, float, np.number))}
    return {}


# ---------------------------------------------------------------------------------------------
# the algorithm


class MAPPO:
    """Multi-agent PPO with decentralised actors and an optional centralised critic.

    ``policy`` is the :class:`MultiAgentActor` (what hooks reach through ``ctx.policy``); ``critic``
    the :class:`MultiAgentCritic`. Build one with :meth:`for_env`.
    """

    def __init__(
        self, *, agents: Sequence[str], obs_dim: int, n_actions: Sequence[int], cfg: MARLConfig,
        device: torch.device,
    ) -> None:
        self.agents = list(agents)
        self.n_agents = len(self.agents)
        self.obs_dim = obs_dim
        self.cfg = cfg
        self.device = device
        self.policy = MultiAgentActor(agents, obs_dim, n_actions, cfg.hidden, cfg.share_parameters).to(device)
        self.critic = MultiAgentCritic(self.n_agents, obs_dim, cfg.hidden, cfg.centralized_critic).to(device)
        self.optim = torch.optim.Adam(
            [*self.policy.parameters(), *self.critic.parameters()], lr=cfg.lr, eps=1e-5
        )
        self.updates = 0

    @classmethod
    def for_env(cls, env: Any, cfg: MARLConfig, device: torch.device) -> MAPPO:
        """Networks sized for a PettingZoo parallel env (Box observations, Discrete actions)."""
        import gymnasium as gym

        agents = list(env.possible_agents)
        dims, acts = [], []
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
        if cfg.share_parameters and len(set(dims)) > 1:
            pass  # observations are zero-padded to the largest; the agent id tells them apart
        return cls(agents=agents, obs_dim=max(dims), n_actions=acts, cfg=cfg, device=device)

    # -- acting --------------------------------------------------------------------------------
    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Actions and log-probabilities for joint observations ``(E, N, D)`` → ``(E, N)`` each."""
        e, n = obs.shape[:2]
        flat = self._tensor(obs).reshape(e * n, -1)
        idx = torch.arange(n, device=self.device).repeat(e)
        logits = self.policy(flat, idx)
        dist = torch.distributions.Categorical(logits=logits)
        act = logits.argmax(-1) if deterministic else dist.sample()
        return act.view(e, n).cpu().numpy(), dist.log_prob(act).view(e, n).cpu().numpy()

    @torch.no_grad()
    def log_prob_np(self, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        e, n = obs.shape[:2]
        idx = torch.arange(n, device=self.device).repeat(e)
        logits = self.policy(self._tensor(obs).reshape(e * n, -1), idx)
        dist = torch.distributions.Categorical(logits=logits)
        return dist.log_prob(torch.as_tensor(act.reshape(-1), device=self.device)).view(e, n).cpu().numpy()

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        """Per-agent values for joint observations ``(E, N, D)`` → ``(E, N)``."""
        return self.critic(self.critic.inputs(self._tensor(obs))).cpu().numpy()

    def act_dict(self, observations: dict[str, Any], *, deterministic: bool = True) -> dict[str, int]:
        """``{agent: action}`` for one env's observation dict (for scripts and benchmarks)."""
        obs = np.zeros((1, self.n_agents, self.obs_dim), dtype=np.float32)
        for i, a in enumerate(self.agents):
            if a in observations:
                o = np.asarray(observations[a], dtype=np.float32).reshape(-1)
                obs[0, i, : o.size] = o
        act, _ = self.act(obs, deterministic=deterministic)
        return {a: int(act[0, i]) for i, a in enumerate(self.agents) if a in observations}

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(), "critic": self.critic.state_dict(),
            "optim": self.optim.state_dict(), "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any], *, networks_only: bool = False) -> None:
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        if not networks_only:
            self.optim.load_state_dict(state["optim"])
            self.updates = int(state.get("updates", 0))

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self, make: Callable[[], Any], *, episodes: int, n_envs: int = 4, seed: int = 10_000,
        deterministic: bool = True,
    ) -> dict[str, Any]:
        """Team returns (sum over agents per episode) and env metrics over ``episodes`` test episodes.

        Episode ``k`` is reset with seed ``seed + k``, so repeated evaluations see the same episodes.
        """
        returns: list[float] = []
        metrics: list[dict[str, float]] = []
        for start in range(0, episodes, n_envs):
            k = min(n_envs, episodes - start)
            pool = ParallelEnvPool(make, k, self.agents, self.obs_dim, seed)
            pool.reset(seeds=[seed + start + i for i in range(k)])
            active = np.ones(k, dtype=bool)
            while active.any():
                act, _ = self.act(pool.obs, deterministic=deterministic)
                for e in np.nonzero(active)[0]:
                    env = pool.envs[e]
                    obs, r, _te, _tr, infos = env.step({a: int(act[e, i]) for i, a in enumerate(self.agents) if pool.alive[e, i]})
                    pool.ep_return[e] += float(sum(r.values()))
                    pool._write(e, obs, env.agents)
                    if not env.agents:
                        active[e] = False
                        returns.append(float(pool.ep_return[e]))
                        metrics.append(episode_metrics(infos))
            pool.close()
        keys = set().union(*metrics) if metrics else set()
        return {
            "returns": returns,
            "return": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
            "metrics": {k: float(np.mean([m[k] for m in metrics if k in m])) for k in sorted(keys)},
        }

    # -- offline imitation -----------------------------------------------------------------------
    def pretrain(
        self, demos: Sequence[Demonstrations], *, steps: int, batch_size: int, lr: float, gamma: float,
        critic: bool = True, seed: int = 0,
    ) -> dict[str, float]:
        """Behaviour cloning of the actors on per-agent demonstrations (CTDE: each actor on its own
        observations), and regression of the centralised critic on the demonstrations' discounted
        returns where every agent's transitions of a source are aligned in time."""
        obs_l, act_l, idx_l = [], [], []
        for d in demos:
            if d.agent is None or d.agent not in self.agents:
                continue
            o = np.asarray(d.obs, dtype=np.float32).reshape(len(d), -1)
            pad = np.zeros((len(d), self.obs_dim), dtype=np.float32)
            pad[:, : o.shape[1]] = o
            obs_l.append(pad)
            act_l.append(np.asarray(d.act, dtype=np.int64).reshape(-1))
            idx_l.append(np.full(len(d), self.agents.index(d.agent), dtype=np.int64))
        if not obs_l:
            return {}
        obs = self._tensor(np.concatenate(obs_l))
        act = torch.as_tensor(np.concatenate(act_l), device=self.device)
        idx = torch.as_tensor(np.concatenate(idx_l), device=self.device)
        c_in, c_ret = self._critic_targets(demos, gamma) if critic else (None, None)
        params = [*self.policy.parameters(), *self.critic.parameters()]
        opt = torch.optim.Adam(params, lr=lr)
        gen = torch.Generator(device="cpu").manual_seed(seed)
        stats: dict[str, float] = {}
        for step in range(steps):
            b = torch.randint(0, len(act), (min(batch_size, len(act)),), generator=gen).to(self.device)
            logits = self.policy(obs[b], idx[b])
            bc = nn.functional.cross_entropy(logits, act[b])
            loss = bc
            if c_in is not None:
                cb = torch.randint(0, len(c_ret), (min(batch_size, len(c_ret)),), generator=gen).to(self.device)
                vloss = 0.5 * (self.critic(c_in[cb]) - c_ret[cb]).pow(2).mean()
                loss = loss + self.cfg.vf_coef * vloss
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step == steps - 1 or step % 100 == 0:
                with torch.no_grad():
                    acc = (logits.argmax(-1) == act[b]).float().mean()
                stats = {"pretrain/bc_loss": float(bc.detach()), "pretrain/accuracy": float(acc)}
                if c_in is not None:
                    stats["pretrain/value_loss"] = float(vloss.detach())
        return stats

    def _critic_targets(
        self, demos: Sequence[Demonstrations], gamma: float
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        by_source: dict[str, dict[str, Demonstrations]] = {}
        for d in demos:
            if d.agent in self.agents:
                by_source.setdefault(d.source, {})[d.agent] = d
        ins, rets = [], []
        for group in by_source.values():
            if set(group) != set(self.agents) or len({len(d) for d in group.values()}) != 1:
                continue
            t = len(next(iter(group.values())))
            joint = np.zeros((t, self.n_agents, self.obs_dim), dtype=np.float32)
            ret = np.zeros((t, self.n_agents), dtype=np.float32)
            for i, a in enumerate(self.agents):
                d = group[a]
                o = np.asarray(d.obs, dtype=np.float32).reshape(t, -1)
                joint[:, i, : o.shape[1]] = o
                end = np.asarray(d.terminated, bool) | np.asarray(d.truncated, bool)
                g = 0.0
                for k in range(t - 1, -1, -1):
                    g = float(d.rew[k]) + (0.0 if end[k] else gamma * g)
                    ret[k, i] = g
            ins.append(self.critic.inputs(self._tensor(joint)).reshape(t * self.n_agents, -1))
            rets.append(torch.as_tensor(ret.reshape(-1), device=self.device))
        if not ins:
            return None, None
        return torch.cat(ins), torch.cat(rets)


# ---------------------------------------------------------------------------------------------
# the training loop


def _agent_batch(data: dict[str, np.ndarray], i: int) -> Any:
    """A Tianshou ``Batch`` of one agent's transitions of the rollout (time-major, flattened)."""
    from tianshou.data import Batch

    def f(x: np.ndarray) -> np.ndarray:
        return x[:, :, i].reshape(x.shape[0] * x.shape[1], *x.shape[3:])

    return Batch(
        obs=f(data["obs"]), act=f(data["act"]), rew=f(data["rew"]), obs_next=f(data["obs_next"]),
        terminated=f(data["term"]), truncated=f(data["trunc"]), done=f(data["end"]),
        policy=Batch(advised=f(data["advised"]), alive=f(data["alive"]), logp_old=f(data["logp"])),
    )


class _Rollout:
    """Fixed-size time-major storage ``(T, E, N, ...)`` for one collection."""

    def __init__(self, t: int, e: int, n: int, d: int) -> None:
        z = np.zeros
        self.data = {
            "obs": z((t, e, n, d), np.float32), "obs_next": z((t, e, n, d), np.float32),
            "act": z((t, e, n), np.int64), "logp": z((t, e, n), np.float32), "val": z((t, e, n), np.float32),
            "rew": z((t, e, n), np.float32), "term": z((t, e, n), bool), "trunc": z((t, e, n), bool),
            "end": z((t, e, n), bool), "alive": z((t, e, n), bool), "advised": z((t, e, n), bool),
            "boot": z((t, e, n), np.float32),
        }
        self.t = t


class MultiAgentTrainer:
    """Collect → shape → GAE → PPO update, with the run's hooks. Used by :func:`train_multiagent`."""

    def __init__(self, ctx: RunContext, algo: MAPPO) -> None:
        self.ctx = ctx
        self.algo = algo
        self.cfg = ctx.config.marl
        self.hookset = hooks.HookSet(ctx.pm)
        tc = ctx.config.train
        self.n_envs = tc.num_envs
        self.t = max(1, self.cfg.steps_per_collect // self.n_envs)
        self.pool = ParallelEnvPool(ctx.make_env, self.n_envs, algo.agents, algo.obs_dim, ctx.config.seed * 1000)
        self.pool.reset()
        self.recent_returns: list[float] = []
        self.recent_metrics: list[dict[str, float]] = []
        self.episodes = 0
        # per-agent episodes for identify_critical_states, assembled step by step (only when a
        # plugin implements it): trajectories in progress per (env, agent), trajectories of agents
        # that already left per env, and whole episodes not yet handed to the hook
        self.finished: list[Episode] = []
        self._partial: dict[tuple[int, int], dict[str, Any]] = {}
        self._left: dict[int, list[tuple[int, Episode]]] = {}
        env0 = self.pool.envs[0]
        self._obs_shapes = [tuple(env0.observation_space(a).shape) for a in algo.agents]
        self._action_spaces = [env0.action_space(a) for a in algo.agents]

    def restart_episodes(self, seeds: Sequence[int]) -> None:
        """End the episodes in progress and reset every env with ``seeds``: the runner does this at
        every epoch boundary, so a run resumed from that checkpoint sees the same env states as the
        uninterrupted one (runner/seeding.py). Episodes cut here are not passed to
        ``identify_critical_states`` and do not count as finished."""
        self.pool.reset(seeds=seeds)
        self._partial.clear()
        self._left.clear()

    # -- collection ----------------------------------------------------------------------------
    def collect(self) -> dict[str, np.ndarray]:
        algo, pool, ctx = self.algo, self.pool, self.ctx
        ro = _Rollout(self.t, self.n_envs, algo.n_agents, algo.obs_dim).data
        gamma = self.cfg.gamma
        for t in range(self.t):
            obs = pool.obs.copy()
            alive = pool.alive.copy()
            act, logp = algo.act(obs)
            advised = np.zeros_like(alive)
            if self.hookset.refine_action:
                env_ids = np.arange(self.n_envs)
                for i, agent in enumerate(algo.agents):
                    info = [pool.infos[e].get(agent, {}) for e in range(self.n_envs)]
                    advice = hooks.refine_action(
                        ctx, obs[:, i], act[:, i].copy(), info, env_ids, agent=agent, action_space=self._action_spaces[i]
                    )
                    if advice is not None:
                        m = advice.mask & alive[:, i]
                        act[m, i] = np.asarray(advice.act).reshape(-1)[m]
                        advised[:, i] |= m
                if advised.any():
                    logp = algo.log_prob_np(obs, act)
            ro["val"][t] = algo.value(obs)
            out = pool.step(act)
            ro["obs"][t], ro["act"][t], ro["logp"][t] = obs, act, logp
            ro["rew"][t], ro["term"][t], ro["trunc"][t], ro["end"][t] = out["rew"], out["term"], out["trunc"], out["end"]
            ro["obs_next"][t], ro["alive"][t], ro["advised"][t] = out["obs_next"], alive, advised
            if out["trunc"].any():  # a time limit is not a terminal state: bootstrap from the last obs
                ro["boot"][t] = np.where(out["trunc"], gamma * algo.value(out["obs_next"]), 0.0)
            if self.hookset.critical_states:
                self._record_step(obs, act, alive, out)
            for _, ret, _, infos in out["finished"]:
                self.recent_returns.append(ret)
                self.recent_metrics.append(episode_metrics(infos))
                self.episodes += 1
            ctx.env_steps += self.n_envs
        ro["last_val"] = algo.value(pool.obs)
        return ro

    def _record_step(self, obs: np.ndarray, act: np.ndarray, alive: np.ndarray, out: dict[str, Any]) -> None:
        """Append one joint step to every live agent's trajectory; close the trajectories that ended.

        Rewards are the env's (before ``shape_reward``). An agent's trajectory ends when it leaves or
        its env's episode ends; when the env's episode ends, one :class:`Episode` per agent that took
        part goes to :attr:`finished` (in agent order).
        """
        agents = self.algo.agents
        for e in range(self.n_envs):
            for i in np.flatnonzero(alive[e]).tolist():
                part = self._partial.get((e, i))
                if part is None:
                    part = self._partial[(e, i)] = {
                        "obs": [], "act": [], "rew": [], "obs_next": [], "start": self.ctx.env_steps,
                    }
                part["obs"].append(obs[e, i])
                part["act"].append(int(act[e, i]))
                part["rew"].append(float(out["rew"][e, i]))
                part["obs_next"].append(out["obs_next"][e, i])
                if out["end"][e, i]:
                    del self._partial[(e, i)]
                    shape = self._obs_shapes[i]
                    size = int(np.prod(shape))
                    t = len(part["rew"])
                    ep = Episode(
                        obs=np.stack(part["obs"])[:, :size].reshape(t, *shape),
                        act=np.asarray(part["act"], dtype=np.int64),
                        rew=np.asarray(part["rew"], dtype=np.float64),
                        obs_next=np.stack(part["obs_next"])[:, :size].reshape(t, *shape),
                        terminated=bool(out["term"][e, i]),
                        env_id=e,
                        start_step=part["start"],
                        agent=agents[i],
                    )
                    self._left.setdefault(e, []).append((i, ep))
            if out["env_done"][e]:
                closed = self._left.pop(e, [])
                closed.sort(key=lambda item: item[0])  # agent order (stable: a returning agent keeps its order)
                self.finished.extend(ep for _, ep in closed)

    def pop_finished(self) -> list[Episode]:
        """Per-agent episodes of the env episodes that finished since the last call, oldest first."""
        finished, self.finished = self.finished, []
        return finished

    # -- advantages ----------------------------------------------------------------------------
    def shape(self, ro: dict[str, np.ndarray]) -> dict[str, float]:
        stats: dict[str, float] = {}
        hooks.begin_update(self.ctx)  # what methods put into this update, for check_losses
        if not self.hookset.shape_reward:
            return stats
        for i, agent in enumerate(self.algo.agents):
            bonus = hooks.shape_reward(self.ctx, _agent_batch(ro, i), agent=agent)
            if bonus is not None:
                bonus = bonus.reshape(ro["rew"].shape[:2]).astype(np.float32) * ro["alive"][:, :, i]
                ro["rew"][:, :, i] += bonus
                stats[f"train/shaping_{agent}"] = float(bonus.mean())
        return stats

    def advantages(self, ro: dict[str, np.ndarray]) -> None:
        g, lam = self.cfg.gamma, self.cfg.gae_lambda
        val, rew, end = ro["val"], ro["rew"] + ro["boot"], ro["end"]
        adv = np.zeros_like(val)
        last = np.zeros_like(val[0])
        for t in range(self.t - 1, -1, -1):
            nxt = ro["last_val"] if t == self.t - 1 else val[t + 1]
            keep = 1.0 - end[t]
            delta = rew[t] + g * nxt * keep - val[t]
            last = delta + g * lam * keep * last
            adv[t] = last
        ro["adv"] = adv
        ro["ret"] = adv + val

    # -- update --------------------------------------------------------------------------------
    def update(self, ro: dict[str, np.ndarray]) -> dict[str, float]:
        algo, cfg, dev = self.algo, self.cfg, self.algo.device
        n = algo.n_agents
        alive = ro["alive"].reshape(-1)
        tt = lambda x, dt=torch.float32: torch.as_tensor(x, dtype=dt, device=dev)  # noqa: E731
        obs_joint = tt(ro["obs"])  # (T, E, N, D)
        c_in = algo.critic.inputs(obs_joint).reshape(-1, algo.critic.net[0].in_features)[alive]
        obs = obs_joint.reshape(-1, algo.obs_dim)[alive]
        idx = torch.arange(n, device=dev).repeat(self.t * self.n_envs)[torch.as_tensor(alive, device=dev)]
        act = tt(ro["act"].reshape(-1)[alive], torch.long)
        logp_old = tt(ro["logp"].reshape(-1)[alive])
        adv = tt(ro["adv"].reshape(-1)[alive])
        ret = tt(ro["ret"].reshape(-1)[alive])
        own = tt(~ro["advised"].reshape(-1)[alive])
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        agent_batches = (
            {a: _agent_batch(ro, i) for i, a in enumerate(algo.agents)} if self.hookset.update_policy else {}
        )
        size = len(act)
        mb = min(cfg.batch_size, size)
        sums: dict[str, float] = {}
        count = 0
        actor_params, critic_params = list(algo.policy.parameters()), list(algo.critic.parameters())
        for _ in range(cfg.repeat):
            perm = torch.randperm(size, device=dev)
            for start in range(0, size, mb):
                b = perm[start : start + mb]
                logits = algo.policy(obs[b], idx[b])
                dist = torch.distributions.Categorical(logits=logits)
                logp = dist.log_prob(act[b])
                ratio = torch.exp(logp - logp_old[b])
                s1 = ratio * adv[b]
                s2 = torch.clamp(ratio, 1 - cfg.eps_clip, 1 + cfg.eps_clip) * adv[b]
                w = own[b]
                pg = -(torch.min(s1, s2) * w).sum() / w.sum().clamp(min=1.0)
                vloss = 0.5 * (algo.critic(c_in[b]) - ret[b]).pow(2).mean()
                ent = dist.entropy().mean()
                loss = pg + cfg.vf_coef * vloss - cfg.ent_coef * ent
                extra_stats: dict[str, float] = {}
                for agent, batch in agent_batches.items():
                    extra, st = hooks.update_policy(self.ctx, batch, algo, agent=agent)
                    if extra is not None:
                        loss = loss + extra
                    extra_stats.update(st)
                if not torch.isfinite(loss):
                    hooks.check_losses(self.ctx, {"losses/total": float(loss.detach()), "losses/policy": float(pg.detach()),
                                                  "losses/value": float(vloss.detach())})
                algo.optim.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(actor_params, cfg.max_grad_norm)
                nn.utils.clip_grad_norm_(critic_params, cfg.max_grad_norm)
                algo.optim.step()
                with torch.no_grad():
                    kl = ((ratio - 1) - torch.log(ratio)).mean()
                    clipfrac = ((ratio - 1).abs() > cfg.eps_clip).float().mean()
                for k, v in {"losses/policy": pg, "losses/value": vloss, "losses/entropy": ent,
                             "losses/approx_kl": kl, "losses/clipfrac": clipfrac}.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                for k, v in extra_stats.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
        algo.updates += 1
        return {k: v / max(count, 1) for k, v in sums.items()}


class MultiAgentLearner:
    """MAPPO (or IPPO) behind the one epoch loop: :class:`MAPPO` and :class:`MultiAgentTrainer`."""

    on_policy = True
    return_kind = "team (sum over agents per episode, mean over test episodes)"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.cfg = ctx.config.marl
        probe = ctx.make_env()
        try:
            self.algorithm = MAPPO.for_env(probe, self.cfg, ctx.device)
        finally:
            if hasattr(probe, "close"):
                probe.close()
        self.trainer: MultiAgentTrainer | None = None
        self._rollout: dict[str, np.ndarray] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state["algorithm"])

    def load_networks(self, state: dict[str, Any], source: str) -> None:
        algo = state.get("algorithm", {})
        if not isinstance(algo, dict) or "policy" not in algo:
            raise ConfigError(f"train.init_from = {source!r} is not a multi-agent run's checkpoint")
        try:
            self.algorithm.load_state_dict(algo, networks_only=True)
        except RuntimeError as exc:  # torch's size-mismatch message
            raise ConfigError(f"train.init_from: {source!r} holds a different network ({str(exc).splitlines()[0]})") from None

    def replay_buffer(self) -> None:
        return None

    def start(self) -> None:
        self.trainer = MultiAgentTrainer(self.ctx, self.algorithm)

    def n_train_envs(self) -> int:
        return self.ctx.config.train.num_envs

    def pretrain(self, demos: list[Demonstrations], steps: int, progress: bool) -> dict[str, float]:
        config = self.ctx.config
        return self.algorithm.pretrain(
            demos, steps=steps, batch_size=config.pretrain.batch_size, lr=config.pretrain.lr,
            gamma=self.cfg.gamma, critic=self.cfg.pretrain_critic, seed=config.seed,
        )

    def warmup(self) -> int:
        return 0

    def collect(self, env_steps: int) -> Collected:
        trainer = self.trainer
        before = self.ctx.env_steps
        self._rollout = trainer.collect()  # advances ctx.env_steps step by step (episode start steps)
        done = self.ctx.env_steps - before
        returns, metrics = list(trainer.recent_returns), list(trainer.recent_metrics)
        trainer.recent_returns.clear()
        trainer.recent_metrics.clear()
        return Collected(env_steps=done, returns=returns, metrics=metrics)

    def pop_finished(self) -> list[Episode]:
        return self.trainer.pop_finished()

    def shape_rewards(self) -> dict[str, float]:
        return self.trainer.shape(self._rollout)

    def update(self, env_steps: int) -> dict[str, float]:
        self.trainer.advantages(self._rollout)
        stats = self.trainer.update(self._rollout)
        self._rollout = None
        return stats

    def restart_episodes(self, seeds: list[int]) -> None:
        self.trainer.restart_episodes(seeds)

    def evaluate(self, episodes: int, seed: int) -> Evaluation:
        tc = self.ctx.config.train
        res = self.algorithm.evaluate(
            self.ctx.make_env, episodes=episodes, n_envs=tc.num_test_envs, seed=seed,
            deterministic=self.cfg.deterministic_eval,
        )
        return Evaluation(returns=np.asarray(res["returns"], dtype=np.float64), metrics=res["metrics"])

    def close(self) -> None:
        if self.trainer is not None:
            self.trainer.pool.close()

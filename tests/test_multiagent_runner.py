"""The multi-agent learner (MAPPO over PettingZoo parallel envs, riding Tianshou): outputs, resume,
hooks, variants, pre-training from demonstrations, agents that leave early, and the simple_spread
baseline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

import guidedrl
from guidedrl.config import from_dict
from guidedrl.context import RunContext
from guidedrl.envs import MultiAgentEnvAdapter
from guidedrl.plugins import make_manager
from guidedrl.records import RunRecorder, read_metrics
from guidedrl.train import train
from guidedrl.train.loop import run_epochs
from guidedrl.train.marl import MAPPO, AgentVectorEnv, MultiAgentCollector, MultiAgentLearner, ObsLayout
from guidedrl.types import CriticalState, Demonstrations, Episode, PolicyUpdate

FACTORY = "factory:human-machine-v0"


def small(tmp_path: Path, **over) -> dict:
    cfg = {
        "env": FACTORY, "steps": 2048, "seed": 0, "out": str(tmp_path / "run"),
        "env_kwargs": {"horizon": 32},
        "train": {"num_envs": 4, "epoch_steps": 1024, "test_episodes": 4, "num_test_envs": 4},
        "marl": {"steps_per_collect": 512, "batch_size": 256, "repeat": 2},
    }
    for k, v in over.items():
        if isinstance(v, dict):
            cfg.setdefault(k, {}).update(v)
        else:
            cfg[k] = v
    return cfg


def test_run_writes_metrics_checkpoint_and_summary(tmp_path):
    result = train(from_dict(small(tmp_path)))
    s = result.summary
    assert s["status"] == "finished" and s["env_steps"] == 2048
    for key in ("best_return", "final_return", "episodes", "online_s", "final_task_completion"):
        assert key in s
    assert s["episodes"] == 2048 // 32
    rows = read_metrics(result.run_dir)
    assert [r["env_steps"] for r in rows] == [1024, 2048]
    for r in rows[1:]:
        for name in ("test/return", "test/return_std", "train/return", "losses/policy", "losses/value",
                     "losses/entropy", "test/task_completion", "time/online_s"):
            assert name in r, name
    assert s["final_return"] == pytest.approx(rows[-1]["test/return"])
    assert s["best_return"] == pytest.approx(max(r["test/return"] for r in rows))
    ckpt = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["env_steps"] == 2048 and "policy" in ckpt["learner"]["algorithm"]


def test_same_seed_same_run(tmp_path):
    a = train(from_dict(small(tmp_path / "a", out=str(tmp_path / "a")))).summary
    b = train(from_dict(small(tmp_path / "b", out=str(tmp_path / "b")))).summary
    assert a["final_return"] == b["final_return"]


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    train(from_dict(small(tmp_path, steps=1024)))
    result = train(from_dict(small(tmp_path, steps=2048)), resume=True)
    assert result.summary["env_steps"] == 2048
    rows = read_metrics(result.run_dir)
    assert [r["env_steps"] for r in rows] == [1024, 2048]


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "killed"
    cfg = small(tmp_path, steps=200_000, out=str(out))
    script = textwrap.dedent(f"""
        from guidedrl.config import from_dict
        from guidedrl.train import train
        train(from_dict({cfg!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "checkpoint.pt").exists():
                rows = read_metrics(out)
                if rows and rows[-1]["env_steps"] >= 2048:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint within 120 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["env_steps"]
    result = train(from_dict({**cfg, "steps": saved + 1024}), resume=True)
    assert result.summary["env_steps"] == saved + 1024
    steps = [r["env_steps"] for r in read_metrics(out)]
    assert steps == sorted(set(steps))  # no row logged twice


class Probe:
    """A test plugin: forces agent_0 to rest, pays agent_1 a bonus, watches every update."""

    def __init__(self):
        self.updates: dict[str, int] = {}
        self.batches: dict[str, object] = {}
        self.shaped: list[str] = []

    @guidedrl.hookimpl
    def refine_action(self, ctx, obs, act, info, env_ids, agent):
        if agent != "agent_0":
            return None
        return guidedrl.ActionAdvice(act=np.zeros(len(act), dtype=np.int64), mask=np.ones(len(act), dtype=bool))

    @guidedrl.hookimpl
    def shape_reward(self, ctx, batch, agent):
        self.shaped.append(agent)
        return np.ones(len(batch)) if agent == "agent_1" else None

    @guidedrl.hookimpl
    def update_policy(self, ctx, batch, algorithm, agent):
        self.updates[agent] = self.updates.get(agent, 0) + 1
        self.batches[agent] = batch
        logp = algorithm.policy.log_prob(torch.as_tensor(batch.obs[:8]), torch.as_tensor(batch.act[:8]), agent)
        return PolicyUpdate(losses={"zero": 0.0 * logp.sum()}, stats={"calls": 1.0})


def test_hooks_are_called_per_agent(tmp_path):
    probe = Probe()
    result = train(from_dict(small(tmp_path, steps=1024)), extra_plugins={"probe": probe})
    agents = [f"agent_{i}" for i in range(4)]
    # 2 collections x (512 samples x 4 agents / 256 per minibatch) x 2 passes = 32 optimiser steps
    assert probe.updates == dict.fromkeys(agents, 32)
    assert probe.shaped == agents * 2
    b0 = probe.batches["agent_0"]
    assert (b0.act == 0).all() and b0.policy.advised.all()
    assert not probe.batches["agent_1"].policy.advised.any()
    assert result.summary["counters"]["advised_steps"] == 1024
    rows = read_metrics(result.run_dir)
    for agent in agents:  # one entry per agent: the per-agent calls of an update do not overwrite each other
        assert rows[-1][f"methods/probe/{agent}/calls"] == 1.0
    assert rows[-1]["train/shaping_agent_1"] == pytest.approx(1.0)


@pytest.mark.parametrize(("share", "central"), [(False, True), (True, False), (False, False)])
def test_variants(tmp_path, share, central):
    result = train(from_dict(small(tmp_path, steps=512, marl={"share_parameters": share, "centralized_critic": central})))
    assert result.summary["env_steps"] == 512
    ckpt = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)["learner"]["algorithm"]
    assert any(k.startswith("nets.3.") for k in ckpt["policy"]) == (not share)
    n_in = ckpt["critic"]["net.0.weight"].shape[1]
    env = guidedrl.registry.make_adapter(FACTORY).make()
    d = env.observation_space("agent_0").shape[0]
    assert n_in == (4 * d if central else d) + 4


class ExpertDemos:
    @guidedrl.hookimpl
    def generate_demonstrations(self, ctx):
        adapter = ctx.adapter
        env = ctx.make_env()
        rec = {a: {"obs": [], "act": [], "rew": []} for a in env.possible_agents}
        for ep in range(6):
            obs, _ = env.reset(seed=900 + ep)
            while env.agents:
                act = adapter.expert.act(adapter.describe(obs).state)
                nxt, rew, *_ = env.step(act)
                for a in act:
                    rec[a]["obs"].append(obs[a])
                    rec[a]["act"].append(act[a])
                    rec[a]["rew"].append(rew[a])
                obs = nxt
        out = []
        for a, r in rec.items():
            n = len(r["act"])
            trunc = np.zeros(n, bool)
            trunc[31::32] = True
            out.append(Demonstrations(obs=np.array(r["obs"]), act=np.array(r["act"]), rew=np.array(r["rew"], np.float32),
                                      obs_next=np.array(r["obs"]), terminated=np.zeros(n, bool), truncated=trunc,
                                      agent=a, meta={"pretrain_steps": 400}))
        return out


def test_pretraining_clones_per_agent_demonstrations(tmp_path):
    scratch = train(from_dict(small(tmp_path / "s", out=str(tmp_path / "s"), steps=512)))
    cloned = train(from_dict(small(tmp_path / "c", out=str(tmp_path / "c"), steps=512)), extra_plugins={"demos": ExpertDemos()})
    assert cloned.summary["pretrain_steps"] == 400 and cloned.summary["demo_transitions"] == 6 * 32 * 4
    row0_s, row0_c = read_metrics(scratch.run_dir)[0], read_metrics(cloned.run_dir)[0]
    assert row0_c["pretrain/accuracy"] > 0.8
    assert "pretrain/value_loss" in row0_c
    assert row0_c["test/return"] > row0_s["test/return"] + 20  # before any online step


# -- agents that leave the episode early ------------------------------------------------------


class Staggered(ParallelEnv):
    """agent_1 terminates after 3 steps, agent_0 is truncated after 6; reward 1 per step for action 1."""

    metadata = {"name": "staggered_v0"}

    def __init__(self):
        self.possible_agents = ["agent_0", "agent_1"]
        self._o = spaces.Box(0, 1, (2,), np.float32)
        self._a = spaces.Discrete(3)

    def observation_space(self, agent):
        return self._o

    def action_space(self, agent):
        return self._a

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        return {a: np.array([0.0, i], np.float32) for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rew = {a: float(actions[a] == 1) for a in self.agents}
        term = {a: a == "agent_1" and self.t >= 3 for a in self.agents}
        trunc = {a: a == "agent_0" and self.t >= 6 for a in self.agents}
        obs = {a: np.array([self.t / 6, i], np.float32) for i, a in enumerate(self.agents)}
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos


class StaggeredAdapter(MultiAgentEnvAdapter):
    env_id = "test:staggered-v0"

    def make(self, **kwargs):
        return Staggered()


def test_vector_env_masks_agents_that_left():
    env = AgentVectorEnv(Staggered, 2, ["agent_0", "agent_1"], ObsLayout(2, 2, joint=True))
    env.reset()
    alive = []
    for _ in range(6):
        _, _, term, trunc, _ = env.step(np.ones(4, dtype=np.int64))
        alive.append(env.alive[0].tolist())
        left = np.flatnonzero((term | trunc) & ~np.repeat(env.env_done, 2))
        if len(left):
            env.reset(env_id=left)  # what the collector does: padding, the env keeps running
    assert alive == [[True, True]] * 2 + [[True, False]] * 3 + [[False, False]]
    assert [ret for _, ret, _, _ in env.pop_finished()] == [6 + 3] * 2  # team return: 6 + 3 rewarded steps
    env.reset(env_id=np.arange(4))
    assert env.alive.all()  # reset after the episode


def test_runner_learns_on_an_env_whose_agents_leave_early(tmp_path):
    cfg = from_dict(small(tmp_path, env="test:staggered-v0", env_kwargs={}, steps=4096,
                          marl={"lr": 3e-3, "steps_per_collect": 256, "batch_size": 64, "repeat": 4}))
    pm = make_manager(())
    recorder = RunRecorder(tmp_path / "st", tensorboard=False)
    ctx = RunContext(config=cfg, adapter=StaggeredAdapter(), pm=pm, run_dir=tmp_path / "st", device=torch.device("cpu"))
    summary = run_epochs(ctx, MultiAgentLearner(ctx), recorder, resume=False, progress=False)
    assert summary["final_return"] >= 8.0  # optimum 9, random 3
    assert isinstance(ctx.algorithm, MAPPO)


# -- identify_critical_states: one Episode per agent of every finished episode ---------------------


class CriticalRecorder:
    """``identify_critical_states``: keeps every call's episodes and marks each episode's last step."""

    def __init__(self):
        self.calls: list[list[Episode]] = []
        self.ctx = None

    @guidedrl.hookimpl
    def identify_critical_states(self, ctx, episodes):
        self.ctx = ctx
        self.calls.append(list(episodes))
        return [CriticalState(episode=k, t=len(ep) - 1, obs=ep.obs[-1], reason=f"end of {ep.agent}")
                for k, ep in enumerate(episodes)]


def test_hook_identify_critical_states_gets_whole_episodes_per_agent(tmp_path):
    # horizon 50 does not divide the 128 steps per env of a collection: episodes span collections
    rec = CriticalRecorder()
    cfg = small(tmp_path, steps=2048, env_kwargs={"horizon": 50})
    result = train(from_dict(cfg), extra_plugins={"rec": rec})
    agents = [f"agent_{i}" for i in range(4)]
    episodes = [ep for call in rec.calls for ep in call]
    assert rec.calls and all(rec.calls)  # called only with something to look at
    n_env_episodes = result.summary["episodes"]
    # 4 envs x 2 epochs of 256 steps each; episodes restart at the epoch boundary (runner/seeding.py),
    # so each epoch finishes 5 episodes per env and cuts the 6 steps of the sixth
    assert n_env_episodes == 4 * 2 * (256 // 50)
    # one per agent per finished episode, plus the 6-step chunks of the episodes cut at the epoch
    # boundary (handed on before the restart; the last epoch's are not: the run ends there)
    cut = [ep for ep in episodes if len(ep) == 256 - 5 * 50]
    assert len(cut) == 4 * 4 and all(ep.start_step == 4 * 50 * 5 for ep in cut)
    episodes = [ep for ep in episodes if len(ep) == 50]
    assert len(episodes) == 4 * n_env_episodes
    adapter = guidedrl.registry.make_adapter(FACTORY, horizon=50)
    d = adapter.make().observation_space("agent_0").shape[0]
    for call in rec.calls:  # within a call: episode by episode, agents in order (cut chunks too)
        assert len(call) % 4 == 0
        for k in range(0, len(call), 4):
            group = call[k : k + 4]
            assert [ep.agent for ep in group] == agents
            assert len({ep.env_id for ep in group}) == 1 and len({ep.start_step for ep in group}) == 1
    for ep in episodes:
        assert isinstance(ep, Episode) and ep.agent in agents
        assert len(ep) == len(ep.obs) == len(ep.act) == len(ep.rew) == len(ep.obs_next) == 50  # whole
        assert ep.obs.shape == (50, d) and ep.obs.dtype == np.float32 and ep.act.dtype == np.int64
        np.testing.assert_array_equal(ep.obs[1:], ep.obs_next[:-1])  # consecutive steps of one episode
        assert not ep.terminated  # the factory truncates
    starts = sorted({(ep.env_id, ep.start_step) for ep in episodes})
    for e in range(4):
        assert [s for env, s in starts if env == e] == [epoch + 4 * 50 * k for epoch in (0, 1024) for k in range(256 // 50)]
    # the episodes are what the env did: replay each env's first episode with the recorded actions
    for e in range(4):
        mine = {ep.agent: ep for ep in episodes if ep.env_id == e and ep.start_step == 0}
        env = adapter.make()
        obs, _ = env.reset(seed=cfg["seed"] * 1000 + e)  # the training pool's first reset
        for t in range(50):
            for a in agents:
                np.testing.assert_array_equal(mine[a].obs[t], obs[a])
            obs, rew, *_ = env.step({a: int(mine[a].act[t]) for a in agents})
            for a in agents:
                assert mine[a].rew[t] == np.float32(rew[a])
                np.testing.assert_array_equal(mine[a].obs_next[t], obs[a])
    ctx = rec.ctx
    assert len(ctx.critical_states) == len(episodes) + len(cut) == result.summary["counters"]["critical_states"]
    assert all(c.source == "rec" and c.t in (49, len(cut[0]) - 1) for c in ctx.critical_states)


def test_hook_identify_critical_states_agents_that_leave_early(tmp_path):
    rec = CriticalRecorder()
    cfg = from_dict(small(tmp_path, env="test:staggered-v0", env_kwargs={}, steps=256,
                          train={"num_envs": 2}, marl={"steps_per_collect": 40, "batch_size": 32, "repeat": 1}))
    pm = make_manager((), extra_plugins={"rec": rec})
    recorder = RunRecorder(tmp_path / "st", tensorboard=False)
    ctx = RunContext(config=cfg, adapter=StaggeredAdapter(), pm=pm, run_dir=tmp_path / "st", device=torch.device("cpu"))
    summary = run_epochs(ctx, MultiAgentLearner(ctx), recorder, resume=False, progress=False)
    episodes = [ep for call in rec.calls for ep in call]
    assert len(episodes) == 2 * summary["episodes"] > 0
    for k in range(0, len(episodes), 2):
        a0, a1 = episodes[k : k + 2]
        assert (a0.agent, len(a0), a0.terminated) == ("agent_0", 6, False)  # truncated after 6 steps
        assert (a1.agent, len(a1), a1.terminated) == ("agent_1", 3, True)  # terminated after 3
        assert a0.env_id == a1.env_id and a0.start_step == a1.start_step
        np.testing.assert_allclose(a0.obs[:, 0], np.arange(6) / 6, rtol=1e-6)
        np.testing.assert_allclose(a1.obs_next[:, 0], np.arange(1, 4) / 6, rtol=1e-6)
        assert a0.obs.shape == (6, 2) and a1.obs[:, 1].tolist() == [1.0] * 3
        np.testing.assert_array_equal(a0.rew, (a0.act == 1).astype(float))


def test_no_critical_state_bookkeeping_without_a_plugin(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("episodes recorded although no plugin implements identify_critical_states")

    monkeypatch.setattr(MultiAgentCollector, "_record_step", fail)
    result = train(from_dict(small(tmp_path, steps=512)))
    assert result.summary["env_steps"] == 512 and "critical_states" not in result.summary["counters"]


# -- the baseline the runner must clear: simple_spread ------------------------------------------


@pytest.mark.slow
def test_mappo_beats_random_on_simple_spread(tmp_path):
    """MAPPO (shared actor, centralised critic), seed 0, 30k joint steps (~1 min on 2 CPU cores),
    must beat a uniformly random policy on the same 16 test episodes by at least 10 team-return
    points (observed: random ≈ -85, trained ≈ -60)."""
    cfg = from_dict({
        "env": "mpe2:simple_spread-v3", "steps": 30_720, "seed": 0, "out": str(tmp_path / "spread"),
        "train": {"num_envs": 8, "epoch_steps": 10_240, "test_episodes": 16, "num_test_envs": 8},
        "marl": {"steps_per_collect": 1024, "lr": 7e-4, "batch_size": 512, "repeat": 5},
    })
    result = train(cfg)
    adapter = guidedrl.registry.make_adapter("mpe2:simple_spread-v3")
    rng = np.random.default_rng(0)
    random_returns = []
    for k in range(16):
        env = adapter.make()
        env.reset(seed=10_000 + k)
        total = 0.0
        while env.agents:
            _, rew, *_ = env.step({a: int(rng.integers(5)) for a in env.agents})
            total += sum(rew.values())
        random_returns.append(total)
    random_return = float(np.mean(random_returns))
    assert result.summary["final_return"] > random_return + 10, (result.summary["final_return"], random_return)
    json.dumps(result.summary)  # summary is JSON-able

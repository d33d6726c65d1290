"""Hostile LLM answers reach ACE's actor and critic on the real case14 grid: counted, never a crash.

The actor goes through the real ``LLMClient`` around LangChain's ``FakeListChatModel`` (the client
re-asks invalid answers and falls back); the critic also through a scripted stand-in that returns
levels outside {±K, ±2K}, as a broken client or backend might.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from tianshou.data import Batch

from guidedrl.config import LLMConfig, RunConfig
from guidedrl.context import RunContext
from guidedrl.llm import LLMClient
from guidedrl.plugins import make_manager
from guidedrl.registry import make_adapter
from guidedrl.train.buffers import MixedReplayBuffer
from guidedrl.types import Episode
from guidedrl_ace import actor, critic
from guidedrl_ace.config import AceConfig
from guidedrl_ace.state import AceState

pytest.importorskip("grid2op")


@pytest.fixture(scope="module")
def grid():
    """The case14 adapter and a few steps of a real episode (all cached for simulate())."""
    adapter = make_adapter("grid2op:l2rpn_case14_sandbox")
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    steps = [obs]
    for _ in range(3):
        obs, *_ = env.step(0)
        steps.append(obs)
    yield adapter, np.stack(steps)
    env.close()


def make_ctx(tmp_path, adapter, model):
    ctx = RunContext(config=RunConfig(env="grid2op:l2rpn_case14_sandbox", algo="sac"), adapter=adapter,
                     pm=make_manager(()), run_dir=tmp_path, device=torch.device("cpu"))
    ctx._llm = model if not hasattr(model, "invoke") else LLMClient(
        model, adapter=adapter, config=LLMConfig(cache="off", retries=1, backoff_s=0.01), run_dir=tmp_path
    )
    ctx.pm.method_order = ["ace"]
    return ctx


def test_actor_counts_hostile_answers_and_accepts_a_checked_one(tmp_path, grid):
    adapter, obs = grid
    vocab = adapter.vocabulary
    bad = 0  # do nothing, judged sub-optimal
    line_on = vocab.index_of({"kind": "line", "line": 3, "status": "off"})
    answers = [
        '{"action": 99999}',  # illegal id
        '{"action": {"kind": "substation", "substation": 77, "bus_layout": [1, 2]}}',  # no such substation
        '{"action": 0}',  # the bad case itself
        "not json at all",
        '{"action": {"kind": "substation", "substation": 99, "bus_layout": [1]}}',
        '{"action": 0}',
        json.dumps({"action": line_on, "reason": "a valid, different action"}),
    ]
    ctx = make_ctx(tmp_path, adapter, FakeListChatModel(responses=answers))
    cfg = AceConfig(rounds=4, min_gain=0.0)
    ctx.replay = MixedReplayBuffer(100, 1, 50, ratio=0.5, alpha=0.6)
    row = actor.refine_step(ctx, cfg, AceState(), obs[1], bad, r_bad=-1.0)
    c = ctx.counters
    # each question allows one re-ask: rounds 1-3 fall back (two hostile answers each), round 4 is valid
    assert c["ace/actor_invalid"] == 3 and c["ace/actor_rounds"] == 4
    assert c["ace/actor_accepted"] == 1 and row is not None and row["act"] == line_on
    assert row["obs_next"].shape == obs[1].shape and row["weight"] >= 1.0
    summary = ctx.llm.summary()
    assert summary["llm_calls"] == len(answers) and summary["llm_invalid"] == 6 and summary["llm_fallbacks"] == 3


def test_actor_rejects_after_r_rounds_and_never_uses_the_bad_case(tmp_path, grid):
    adapter, obs = grid

    class Stubborn:  # a stand-in client whose answers slip past validation
        exhausted = False

        def __init__(self):
            self.answers = [0, 10**9, {"kind": "substation", "substation": 50, "bus_layout": [1]}]

        def suggest_action(self, obs, bad_action=None, history=None):
            return self.answers.pop(0)

    ctx = make_ctx(tmp_path, adapter, Stubborn())
    assert actor.refine_step(ctx, AceConfig(rounds=3), AceState(), obs[1], 0, r_bad=0.0) is None
    c = ctx.counters
    assert c["ace/actor_bad_case"] == 1 and c["ace/actor_invalid"] == 2 and c["ace/actor_rejected"] == 1


def buffer_with(ep):
    buf = MixedReplayBuffer(64, 1, 16, ratio=0.25)
    n = len(ep)
    idx = []
    for t in range(n):
        b = Batch(obs=ep.obs[t : t + 1], act=ep.act[t : t + 1], rew=ep.rew[t : t + 1], obs_next=ep.obs[t : t + 1],
                  terminated=np.array([t == n - 1]), truncated=np.array([False]), info=Batch(),
                  policy=Batch(advised=np.array([False]), advised_by=np.array([-1]), bonus=np.zeros(1)))
        idx.append(buf.add(b, buffer_ids=[0])[0][0])
    return buf, np.asarray(idx)


def test_critic_ignores_levels_outside_the_set_and_stores_valid_ones_once(tmp_path, grid):
    adapter, obs = grid
    rew = np.array([0.8, 0.8, 0.8, 0.0])
    ep = Episode(obs=obs, act=np.zeros(4, np.int64), rew=rew, terminated=True)
    buf, idx = buffer_with(ep)
    ep = Episode(obs=obs, act=np.zeros(4, np.int64), rew=rew, terminated=True, indices=idx)

    class Critic:
        exhausted = False

        def __init__(self, answer):
            self.answer = answer

        def critique_rewards(self, episode, keys, k=1.0):
            return self.answer

    cfg = AceConfig(key_threshold=0.5, k=0.25)
    for answer, invalid in (({3: 5.0}, 1), ({3: float("nan"), "x": 0.5}, 2), ({0: 0.5}, 1), (None, 0)):
        ctx = make_ctx(tmp_path, adapter, Critic(answer))
        ctx.replay = buf
        assert critic.reassign(ctx, cfg, AceState(), [ep]) == 0
        assert ctx.counters["ace/critic_invalid_levels"] == invalid
    assert np.allclose(buf.rew[idx], rew)  # nothing changed
    ctx = make_ctx(tmp_path, adapter, Critic({3: -0.5}))
    ctx.replay = buf
    assert critic.reassign(ctx, cfg, AceState(), [ep]) == 1
    assert buf.rew[idx[3]] == pytest.approx(-0.5) and buf.policy.bonus[idx[3]] == pytest.approx(-0.5)
    assert np.allclose(buf.rew[idx[:3]], 0.8)


def test_critic_through_the_client_counts_an_out_of_range_level_as_a_failure(tmp_path, grid):
    adapter, obs = grid
    rew = np.array([0.8, 0.8, 0.8, 0.0])
    ep0 = Episode(obs=obs, act=np.zeros(4, np.int64), rew=rew, terminated=True)
    buf, idx = buffer_with(ep0)
    ep = Episode(obs=obs, act=np.zeros(4, np.int64), rew=rew, terminated=True, indices=idx)
    hostile = '{"rewards": [{"t": 3, "level": 3}]}'
    ctx = make_ctx(tmp_path, adapter, FakeListChatModel(responses=[hostile, hostile]))
    ctx.replay = buf
    assert critic.reassign(ctx, AceConfig(window=0), AceState(), [ep]) == 0
    assert ctx.counters["ace/critic_failed"] == 1
    assert np.allclose(buf.rew[idx], rew)

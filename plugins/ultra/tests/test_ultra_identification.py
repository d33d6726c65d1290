"""Phase 1 (critical state identification) with scripted LLM answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guidedrl_ultra import UltraConfig
from guidedrl_ultra.identification import identify, valid_items
from guidedrl_ultra.state import state_of

LEFT, STAY, RIGHT = 0, 1, 2


def run(ctx, config, episodes):
    return identify(ctx, config, state_of(ctx, config), episodes)


def test_critical_states_get_advice_and_ratings(make_ctx, scripted, episode):
    llm = scripted(
        critical=[{"t": 1, "score": 0.9, "reason": "walked away"}, {"t": 3, "score": 0.5, "reason": "stood still"}],
        action=lambda obs, bad: RIGHT,
        reward=lambda obs, action: -0.8 if action != RIGHT else 0.9,
    )
    ctx = make_ctx(llm=llm)
    ep = episode([2, 3, 2, 2, 3], [RIGHT, LEFT, STAY, STAY, RIGHT])
    config = UltraConfig(variant="ra")
    states = run(ctx, config, [ep])

    assert [(s.t, s.action, s.reward) for s in states] == [(1, RIGHT, -0.8), (3, RIGHT, -0.8)]
    # the LLM was shown the policy's own (bad) action at each critical state
    assert [bad for _, bad in llm.asked["action"]] == [LEFT, STAY]
    table = state_of(ctx, config).table
    assert len(table) == 2
    entry = table.entries[table.match(np.array([[3.0, 7.0]]))[0]]
    assert entry.advice == RIGHT and entry.taken == LEFT
    assert sorted(entry.ratings) == [(LEFT, -0.8), (RIGHT, 0.9)]
    assert ctx.counters["ultra/critical_states"] == 2
    assert ctx.counters["ultra/advice"] == 2
    assert ctx.counters["ultra/reward_ratings"] == 4
    assert ctx.counters["ultra/fallbacks"] == 0


def test_chunking_settings_reach_the_llm(make_ctx, scripted, episode):
    llm = scripted(critical=[], action=RIGHT, reward=0.0)
    ctx = make_ctx(llm=llm)
    run(ctx, UltraConfig(max_states=3, chunk_len=20, overlap=5), [episode([1, 2], [RIGHT, RIGHT])])
    _, max_states, chunk_len, overlap = llm.asked["critical_states"][0]
    assert (max_states, chunk_len, overlap) == (3, 20, 5)


def test_only_first_episodes_then_refresh(make_ctx, scripted, episode):
    llm = scripted(critical=[{"t": 0, "score": 1.0, "reason": ""}], action=RIGHT, reward=0.5)
    ctx = make_ctx(llm=llm)
    config = UltraConfig(episodes=2, refresh_every=1000, refresh_episodes=1)
    eps = [episode([p, p + 1], [LEFT, LEFT]) for p in range(5)]
    run(ctx, config, eps[:3])  # 3 finished, only the first 2 are analysed
    assert len(llm.asked["critical_states"]) == 2
    ctx.env_steps = 500
    assert run(ctx, config, eps[3:]) is None  # not yet time to refresh
    ctx.env_steps = 1000
    run(ctx, config, eps[3:])
    assert len(llm.asked["critical_states"]) == 3
    assert ctx.counters["ultra/episodes_analysed"] == 3


@pytest.mark.parametrize(
    "item",
    [
        {"t": 99, "score": 1.0},  # not a step of the episode
        {"t": -1, "score": 1.0},
        {"t": "2", "score": 1.0},  # not an integer
        {"t": 1.5, "score": 1.0},
        {"t": True, "score": 1.0},
        {"t": 1, "score": math.nan},
        {"t": 1, "score": "high"},
        "t=1",  # not an object
    ],
)
def test_malformed_critical_states_are_dropped(make_ctx, scripted, episode, item):
    llm = scripted(critical=[item], action=RIGHT, reward=0.5)
    ctx = make_ctx(llm=llm)
    states = run(ctx, UltraConfig(), [episode([1, 2, 3], [LEFT, LEFT, LEFT])])
    assert states == []
    assert llm.asked["action"] == [] and llm.asked["implicit_reward"] == []
    assert ctx.counters["ultra/rejected_items"] == 1


def test_valid_items_clip_scores_and_keep_one_per_step():
    items = valid_items([{"t": 1, "score": 3.0}, {"t": 1, "score": 0.2}, {"t": 0, "score": -1}], length=2)
    assert items == [{"t": 1, "score": 1.0, "reason": ""}, {"t": 0, "score": 0.0, "reason": ""}]
    assert valid_items({"t": 1}, length=2) == []
    assert valid_items([{"t": 1, "score": 0.2}], length=2, min_score=0.5) == []


def test_no_answer_is_a_fallback(make_ctx, scripted, episode):
    llm = scripted(critical=None, action=RIGHT, reward=0.5)
    ctx = make_ctx(llm=llm)
    assert run(ctx, UltraConfig(), [episode([1, 2], [LEFT, LEFT])]) == []
    assert ctx.counters["ultra/fallbacks"] == 1
    assert len(state_of(ctx, UltraConfig()).table) == 0


@pytest.mark.parametrize("bad_action", [7, -1, "jump", None, [1, 2], 1.5])
def test_illegal_advice_is_not_applied(make_ctx, scripted, episode, bad_action):
    llm = scripted(critical=[{"t": 0, "score": 1.0, "reason": ""}], action=bad_action, reward=0.5)
    ctx = make_ctx(llm=llm)
    config = UltraConfig(variant="a")
    assert run(ctx, config, [episode([1, 2], [LEFT, LEFT])]) == []
    assert len(state_of(ctx, config).table) == 0  # no usable guidance: not kept
    assert ctx.counters["ultra/fallbacks"] == 1
    assert llm.asked["implicit_reward"] == []  # variant a asks no rewards


@pytest.mark.parametrize("bad_reward", [1.5, -2.0, math.nan, math.inf, "good", None, True])
def test_malformed_implicit_rewards_are_dropped(make_ctx, scripted, episode, bad_reward):
    llm = scripted(critical=[{"t": 0, "score": 1.0, "reason": ""}], action=RIGHT, reward=bad_reward)
    ctx = make_ctx(llm=llm)
    config = UltraConfig(variant="r")
    assert run(ctx, config, [episode([1, 2], [LEFT, LEFT])]) == []
    assert llm.asked["action"] == []  # variant r asks no actions
    assert ctx.counters["ultra/reward_ratings"] == 0
    assert ctx.counters["ultra/fallbacks"] == 1


def test_box_advice_outside_bounds_is_rejected(make_ctx, scripted, line_adapter):
    from guidedrl.types import Episode

    answers = iter([[0.5, -0.5], [2.0, 0.0], [0.1], [math.nan, 0.0]])
    llm = scripted(critical=[{"t": t, "score": 1.0, "reason": ""} for t in range(4)], action=lambda obs, bad: next(answers))
    ctx = make_ctx(adapter=line_adapter, llm=llm)
    obs = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 3.0], [3.0, -3.0]], dtype=np.float32)
    ep = Episode(obs=obs, act=np.zeros((4, 2), np.float32), rew=np.zeros(4))
    config = UltraConfig(variant="a")
    states = run(ctx, config, [ep])
    assert len(states) == 1
    np.testing.assert_allclose(states[0].action, [0.5, -0.5])
    assert ctx.counters["ultra/fallbacks"] == 3


def test_a_state_found_again_is_merged(make_ctx, scripted, episode):
    advice = iter([RIGHT, LEFT])
    llm = scripted(critical=[{"t": 0, "score": 0.4, "reason": ""}], action=lambda obs, bad: next(advice), reward=0.1)
    ctx = make_ctx(llm=llm)
    config = UltraConfig(episodes=2)
    run(ctx, config, [episode([4, 5], [LEFT, LEFT]), episode([4, 3], [STAY, STAY])])
    table = state_of(ctx, config).table
    assert len(table) == 1
    assert table.entries[0].advice == LEFT  # the newer advice wins
    assert ctx.counters["ultra/critical_states_merged"] == 1

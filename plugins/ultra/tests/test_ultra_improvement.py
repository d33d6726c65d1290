"""Phase 2 (policy improvement at critical states): LLM actions (A) and implicit rewards (R)."""

from __future__ import annotations

import numpy as np
from tianshou.data import Batch

from guidedrl_ultra import CriticalEntry, UltraConfig
from guidedrl_ultra.improvement import refine_action, shape_reward
from guidedrl_ultra.state import state_of

LEFT, STAY, RIGHT = 0, 1, 2


def with_table(ctx, config, entries):
    st = state_of(ctx, config)
    st.table.observe(np.array([[p, 7.0] for p in range(10)]))
    st.table.add(entries)
    return st


def at(pos, advice=RIGHT, ratings=(), taken=LEFT):
    obs = np.array([pos, 7.0], dtype=np.float32)
    return CriticalEntry(obs=obs, features=obs.astype(np.float64), taken=taken, advice=advice, ratings=list(ratings))


def test_llm_action_replaces_the_policy_only_at_critical_states(make_ctx):
    ctx = make_ctx()
    config = UltraConfig(variant="a")
    st = with_table(ctx, config, [at(3, advice=RIGHT), at(5, advice=None)])
    obs = np.array([[3, 7], [4, 7], [5, 7], [3, 7]], dtype=np.float32)
    policy = np.array([LEFT, LEFT, LEFT, STAY])
    advice = refine_action(ctx, config, st, obs, policy)
    np.testing.assert_array_equal(advice.mask, [True, False, False, True])  # 5 has no usable advice
    np.testing.assert_array_equal(advice.act[advice.mask], [RIGHT, RIGHT])
    np.testing.assert_array_equal(policy, [LEFT, LEFT, LEFT, STAY])  # the input is not edited
    assert ctx.counters["ultra/matched_states"] == 3


def test_no_match_or_no_a_means_no_advice(make_ctx):
    ctx = make_ctx()
    st = with_table(ctx, UltraConfig(), [at(3)])
    obs = np.array([[8, 7]], dtype=np.float32)
    assert refine_action(ctx, UltraConfig(), st, obs, np.array([LEFT])) is None
    assert refine_action(ctx, UltraConfig(variant="r"), st, np.array([[3, 7]], np.float32), np.array([LEFT])) is None
    assert refine_action(ctx, UltraConfig(advice_prob=0.0), st, np.array([[3, 7]], np.float32), np.array([LEFT])) is None


def test_implicit_reward_rates_the_executed_action(make_ctx, scripted):
    llm = scripted(reward=lambda obs, action: 0.25)
    ctx = make_ctx(llm=llm)
    config = UltraConfig(variant="r", reward_scale=0.5)
    st = with_table(ctx, config, [at(3, advice=None, ratings=[(LEFT, -1.0), (RIGHT, 1.0)])])
    batch = Batch(obs=np.array([[3, 7], [3, 7], [6, 7], [3, 7]], np.float32), act=np.array([LEFT, RIGHT, LEFT, STAY]))
    bonus = shape_reward(ctx, config, st, batch)
    # LEFT and RIGHT were rated at identification; STAY is new and asked once; 6 is not critical
    np.testing.assert_allclose(bonus, [-0.5, 0.5, 0.0, 0.125])
    assert len(llm.asked["implicit_reward"]) == 1
    shape_reward(ctx, config, st, batch)
    assert len(llm.asked["implicit_reward"]) == 1  # remembered
    assert ctx.counters["ultra/implicit_rewards"] == 6


def test_unusable_rating_gives_no_bonus_and_is_not_asked_again(make_ctx, scripted):
    llm = scripted(reward=lambda obs, action: 3.0)  # out of [-1, 1]
    ctx = make_ctx(llm=llm)
    config = UltraConfig(variant="r")
    st = with_table(ctx, config, [at(3, advice=None)])
    batch = Batch(obs=np.array([[3, 7]], np.float32), act=np.array([STAY]))
    assert shape_reward(ctx, config, st, batch) is None
    assert shape_reward(ctx, config, st, batch) is None
    assert len(llm.asked["implicit_reward"]) == 1
    assert ctx.counters["ultra/implicit_rewards"] == 0
    assert ctx.counters["ultra/fallbacks"] == 1


def test_rating_budget_per_state(make_ctx, scripted):
    llm = scripted(reward=0.5)
    ctx = make_ctx(llm=llm)
    config = UltraConfig(variant="r", max_ratings_per_state=1)
    st = with_table(ctx, config, [at(3, advice=None, ratings=[(LEFT, -1.0)])])
    batch = Batch(obs=np.array([[3, 7], [3, 7]], np.float32), act=np.array([RIGHT, LEFT]))
    np.testing.assert_allclose(shape_reward(ctx, config, st, batch), [0.0, -0.1])
    assert llm.asked["implicit_reward"] == []
    off = UltraConfig(variant="r", rate_executed=False)
    assert shape_reward(ctx, off, st, Batch(obs=np.array([[3, 7]], np.float32), act=np.array([STAY]))) is None


def test_continuous_actions_share_ratings_within_tolerance(make_ctx, scripted, line_adapter):
    llm = scripted(reward=lambda obs, action: 0.3)
    ctx = make_ctx(adapter=line_adapter, llm=llm)
    config = UltraConfig(variant="r", reward_scale=1.0, action_tolerance=0.1)
    st = state_of(ctx, config)
    st.table.observe(np.random.default_rng(0).normal(size=(500, 2)))
    obs = np.zeros(2, np.float32)
    st.table.add([CriticalEntry(obs=obs, features=obs.astype(np.float64), taken=np.array([1.0, 1.0], np.float32),
                                ratings=[(np.array([1.0, 1.0], np.float32), -0.9)])])
    batch = Batch(obs=np.zeros((3, 2), np.float32), act=np.array([[0.95, 1.0], [-1.0, 0.0], [-0.98, 0.02]], np.float32))
    np.testing.assert_allclose(shape_reward(ctx, config, st, batch), [-0.9, 0.3, 0.3])
    assert len(llm.asked["implicit_reward"]) == 1  # the third is within tolerance of the second


def test_variant_a_adds_no_reward(make_ctx):
    ctx = make_ctx()
    config = UltraConfig(variant="a")
    st = with_table(ctx, config, [at(3, ratings=[(LEFT, -1.0)])])
    assert shape_reward(ctx, config, st, Batch(obs=np.array([[3, 7]], np.float32), act=np.array([LEFT]))) is None

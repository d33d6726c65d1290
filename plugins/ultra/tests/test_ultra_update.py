"""Phase 3 (policy update): the imitation term toward ULTRA's advice, for PPO, SAC and DQN."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tianshou.data import Batch

from guidedrl.config import RunConfig
from guidedrl.train.algorithms import build_algorithm
from guidedrl_ultra import CriticalEntry, UltraConfig
from guidedrl_ultra.state import state_of
from guidedrl_ultra.update import update_policy

LEFT, STAY, RIGHT = 0, 1, 2
ULTRA, OTHER, NONE = 0, 1, -1  # codes of batch.policy.advised_by (index in ctx.methods; conftest)


def advice_record(*codes):
    """``batch.policy`` as the training collector stores it: who advised each row."""
    return Batch(advised=np.array(codes) >= 0, advised_by=np.array(codes))


def algorithm_for(ctx, algo):
    env = ctx.adapter.make()
    try:
        algorithm, _ = build_algorithm(RunConfig(env=ctx.adapter.env_id, algo=algo), env, torch.device("cpu"))
    finally:
        env.close()
    ctx.algorithm = algorithm
    return algorithm


def corridor_table(ctx, config):
    st = state_of(ctx, config)
    st.table.observe(np.array([[p, 7.0] for p in range(10)]))
    obs = np.array([3.0, 7.0], np.float32)
    st.table.add([CriticalEntry(obs=obs, features=obs.astype(np.float64), taken=LEFT, advice=RIGHT)])
    return st


def train_on(algorithm, ctx, config, st, batch, steps=60):
    params = list(algorithm.policy.parameters())
    optim = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        upd = update_policy(ctx, config, st, batch, algorithm)
        optim.zero_grad()
        upd.losses["imitation"].backward()
        optim.step()
    return upd


@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_discrete_policy_learns_the_advice(make_ctx, algo):
    torch.manual_seed(0)
    ctx = make_ctx()
    algorithm = algorithm_for(ctx, algo)
    config = UltraConfig(variant="ra", imitate_table=False)
    st = corridor_table(ctx, config)
    batch = Batch(
        obs=np.array([[3, 7], [3, 7], [5, 7]], np.float32),
        act=np.array([RIGHT, LEFT, LEFT]),
        # row 0: ULTRA's advice; row 1: advised by another method; row 2: the policy's own
        policy=advice_record(ULTRA, OTHER, NONE),
    )
    upd = update_policy(ctx, config, st, batch, algorithm)
    assert upd.stats["imitation_rollout"] == 1.0
    assert torch.isfinite(upd.losses["imitation"])
    train_on(algorithm, ctx, config, st, batch)
    assert int(ctx.act(np.array([[3, 7]], np.float32))[0]) == RIGHT


def test_sac_mean_action_moves_to_the_advice(make_ctx, line_adapter):
    torch.manual_seed(0)
    ctx = make_ctx(adapter=line_adapter)
    algorithm = algorithm_for(ctx, "sac")
    config = UltraConfig(variant="a", imitate_table=False)
    st = state_of(ctx, config)
    st.table.observe(np.random.default_rng(0).normal(size=(500, 2)))
    obs = np.array([0.5, -0.5], np.float32)
    advice = np.array([0.6, -0.4], np.float32)
    st.table.add([CriticalEntry(obs=obs, features=obs.astype(np.float64), taken=np.zeros(2, np.float32), advice=advice)])
    batch = Batch(obs=obs[None], act=advice[None], policy=advice_record(ULTRA))
    before = float(update_policy(ctx, config, st, batch, algorithm).losses["imitation"].detach())
    train_on(algorithm, ctx, config, st, batch, steps=200)
    after = float(update_policy(ctx, config, st, batch, algorithm).losses["imitation"].detach())
    assert after < before * 0.1
    np.testing.assert_allclose(ctx.act(obs[None])[0], advice, atol=0.1)


def test_nothing_to_imitate(make_ctx):
    ctx = make_ctx()
    algorithm = algorithm_for(ctx, "ppo")
    config = UltraConfig(imitate_table=False)
    st = corridor_table(ctx, config)
    unadvised = Batch(obs=np.array([[3, 7]], np.float32), act=np.array([RIGHT]), policy=advice_record(NONE))
    assert update_policy(ctx, config, st, unadvised, algorithm) is None
    no_policy = Batch(obs=np.array([[3, 7]], np.float32), act=np.array([RIGHT]))
    assert update_policy(ctx, config, st, no_policy, algorithm) is None
    advised = Batch(obs=np.array([[3, 7]], np.float32), act=np.array([RIGHT]), policy=advice_record(ULTRA))
    assert update_policy(ctx, UltraConfig(variant="r", imitate_table=False), st, advised, algorithm) is None
    assert update_policy(ctx, UltraConfig(imitation_weight=0.0), st, advised, algorithm) is None


def test_table_imitation_needs_no_rollout_match(make_ctx):
    torch.manual_seed(0)
    ctx = make_ctx()
    algorithm = algorithm_for(ctx, "ppo")
    config = UltraConfig(imitate_table=True, imitation_weight=2.0)
    st = corridor_table(ctx, config)
    batch = Batch(obs=np.array([[5, 7]], np.float32), act=np.array([LEFT]), policy=advice_record(NONE))
    upd = update_policy(ctx, config, st, batch, algorithm)
    assert upd.stats == {"imitation_rollout": 0.0, "imitation_table": 1.0}
    train_on(algorithm, ctx, config, st, batch)
    assert int(ctx.act(np.array([[3, 7]], np.float32))[0]) == RIGHT


def test_continuous_ppo_imitates_the_mean_and_keeps_its_spread(make_ctx, line_adapter):
    torch.manual_seed(0)
    ctx = make_ctx(adapter=line_adapter)
    algorithm = algorithm_for(ctx, "ppo")
    config = UltraConfig(variant="a", imitate_table=False)
    st = state_of(ctx, config)
    st.table.observe(np.random.default_rng(0).normal(size=(500, 2)))
    obs = np.array([0.5, -0.5], np.float32)
    advice = np.array([0.6, -0.4], np.float32)
    st.table.add([CriticalEntry(obs=obs, features=obs.astype(np.float64), taken=np.zeros(2, np.float32), advice=advice)])
    batch = Batch(obs=obs[None], act=advice[None], policy=advice_record(ULTRA))
    sigma = algorithm.policy.actor.sigma_param.detach().clone()
    train_on(algorithm, ctx, config, st, batch, steps=150)
    np.testing.assert_allclose(ctx.act(obs[None])[0], advice, atol=0.05)
    # the mean moved; the exploration noise did not collapse
    torch.testing.assert_close(algorithm.policy.actor.sigma_param.detach(), sigma)


def test_continuous_ppo_nll_imitation_also_narrows_the_spread(make_ctx, line_adapter):
    torch.manual_seed(0)
    ctx = make_ctx(adapter=line_adapter)
    algorithm = algorithm_for(ctx, "ppo")
    config = UltraConfig(variant="a", imitate_table=False, imitation_continuous="nll")
    st = state_of(ctx, config)
    st.table.observe(np.random.default_rng(0).normal(size=(500, 2)))
    obs = np.array([0.5, -0.5], np.float32)
    advice = np.array([0.6, -0.4], np.float32)
    st.table.add([CriticalEntry(obs=obs, features=obs.astype(np.float64), taken=np.zeros(2, np.float32), advice=advice)])
    batch = Batch(obs=obs[None], act=advice[None], policy=advice_record(ULTRA))
    sigma = algorithm.policy.actor.sigma_param.detach().clone()
    train_on(algorithm, ctx, config, st, batch, steps=150)
    np.testing.assert_allclose(ctx.act(obs[None])[0], advice, atol=0.05)
    assert (algorithm.policy.actor.sigma_param.detach() < sigma - 0.1).all()  # the log-std fell: less exploration

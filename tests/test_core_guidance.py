"""The guidance plumbing of single-agent runs (guidedrl.guidance): the bonus column, which method
advised each step, and the replay buffers (prioritized, mixed).

Algorithm-level tests build the algorithm as ``train`` does and collect real env steps with the
training collector, so the buffer holds exactly what a run's buffer holds.
"""

from __future__ import annotations

import copy
import traceback

import numpy as np
import pytest
import torch
from guidedrl_core_testkit import AlwaysAction, ConstantBonus, guided_algorithm, make_ctx
from tianshou.data import Batch, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from guidedrl import guidance, hookimpl
from guidedrl.config import from_dict
from guidedrl.train import train
from guidedrl.train.collector import GuidedCollector
from guidedrl.train.hooks import HookSet
from guidedrl.train.vector import make_vector_env


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class ObsBonus:
    """``shape_reward``: a bonus that differs per transition (10 x the first observation feature),
    counting calls and the transitions each call saw."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.inside_update = 0

    @hookimpl
    def shape_reward(self, batch):
        self.sizes.append(len(batch))
        stack = traceback.extract_stack()
        self.inside_update += any(f.name in ("_update", "_update_with_batch", "_preprocess_batch") for f in stack)
        return 10.0 * np.asarray(batch.obs)[:, 0]


def _collect(algorithm, ctx, n_steps: int, num_envs: int = 2, *, random: bool = True):
    """A buffer of ``n_steps`` real env steps collected by the training collector, shaped as the loop
    shapes them (one ``shape_new_transitions`` after the collection)."""
    venv = make_vector_env(ctx.adapter, num_envs, "dummy", seed=0)
    buffer = VectorReplayBuffer(n_steps, num_envs)
    collector = GuidedCollector(algorithm, venv, buffer, exploration_noise=True, ctx=ctx, hook_set=HookSet(ctx.pm))
    collector.reset()
    try:
        with policy_within_training_step(algorithm.policy), torch.no_grad():
            collector.collect(n_step=n_steps, random=random)
    finally:
        venv.close()
    collector.shape_new_transitions()
    return buffer, collector


# -- the bonus column -------------------------------------------------------------------------


def test_bonus_is_stored_once_with_each_transition_and_rew_is_env_reward_plus_bonus(tmp_path):
    plugin = ObsBonus()
    algorithm, ctx = guided_algorithm(tmp_path, "dqn", "CartPole-v1", {"obs": plugin})
    buffer, collector = _collect(algorithm, ctx, 64)
    assert plugin.sizes == [64], "one call for the whole collected slice"
    bonus = guidance.bonus_of(buffer[np.arange(64)])
    np.testing.assert_allclose(bonus, 10.0 * buffer.obs[:64, 0])
    np.testing.assert_allclose(guidance.env_reward(buffer[np.arange(64)]), 1.0, atol=1e-6)  # CartPole pays 1 a step
    np.testing.assert_allclose(buffer.rew[:64], 1.0 + bonus, atol=1e-6)
    assert collector.new_indices().size == 0
    assert collector.shape_new_transitions() == {}  # nothing new: not shaped twice
    assert plugin.sizes == [64]
    assert ctx.counters["shaped_transitions"] == 64


def test_set_bonus_overwrites_and_keeps_env_reward(tmp_path):
    algorithm, ctx = guided_algorithm(tmp_path, "dqn", "CartPole-v1", {"c": ConstantBonus(0.5)})
    buffer, _ = _collect(algorithm, ctx, 32)
    idx = np.array([3, 4, 5])
    guidance.set_bonus(buffer, idx, [-1.0, 0.0, 2.0])
    batch = buffer[idx]
    np.testing.assert_allclose(guidance.bonus_of(batch), [-1.0, 0.0, 2.0])
    np.testing.assert_allclose(guidance.env_reward(batch), 1.0, atol=1e-6)
    np.testing.assert_allclose(buffer.rew[idx], [0.0, 1.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(buffer.rew[6], 1.5, atol=1e-6)  # others keep theirs
    guidance.set_bonus(buffer, idx, 0.0)  # one number for all
    np.testing.assert_allclose(buffer.rew[idx], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        guidance.set_bonus(buffer, idx, np.nan)
    with pytest.raises(ValueError, match="no bonus column"):
        plain = VectorReplayBuffer(8, 1)
        plain.add(Batch(obs=np.zeros((1, 4)), act=[0], rew=[1.0], terminated=[False], truncated=[False], obs_next=np.zeros((1, 4)), info=[{}]))
        guidance.set_bonus(plain, [0], 1.0)


def test_the_bonus_column_survives_a_checkpointed_buffer(tmp_path):
    from guidedrl.records import replay_buffer_arrays, restore_replay_buffer

    algorithm, ctx = guided_algorithm(tmp_path, "dqn", "CartPole-v1", {"obs": ObsBonus()})
    buffer, _ = _collect(algorithm, ctx, 64)
    arrays = replay_buffer_arrays(buffer, "pair")
    assert "data/policy/bonus" in arrays and "data/policy/advised_by" in arrays
    restored = VectorReplayBuffer(64, 2)
    restore_replay_buffer(restored, arrays)
    idx = buffer.sample_indices(0)
    np.testing.assert_array_equal(restored.rew[idx], buffer.rew[idx])
    np.testing.assert_array_equal(guidance.bonus_of(restored[idx]), guidance.bonus_of(buffer[idx]))
    guidance.set_bonus(restored, idx[:3], 0.0)  # still a bonus column ACE can rewrite
    np.testing.assert_allclose(restored.rew[idx[:3]], 1.0, atol=1e-6)


def _nstep_returns(algorithm, buffer, indices):
    batch = buffer[indices]
    return _np(algorithm._preprocess_batch(copy.deepcopy(batch), buffer, indices).returns).reshape(-1)


def test_off_policy_n_step_target_is_the_same_whichever_neighbours_are_sampled(tmp_path):
    """The issue's "done when": with n_step = 3, a transition's target uses the stored bonuses of the
    next steps, whether or not those steps are in the sampled batch."""
    n = 3
    plugin = ObsBonus()
    plain, _ = guided_algorithm(tmp_path / "plain", "dqn", "CartPole-v1", {}, dqn={"n_step": n})
    guided, ctx = guided_algorithm(tmp_path / "guided", "dqn", "CartPole-v1", {"obs": plugin}, dqn={"n_step": n})
    guided.load_state_dict(plain.state_dict())
    buffer, _ = _collect(guided, ctx, 200)
    all_idx = buffer.sample_indices(0)
    alone = all_idx[::7]  # every 7th: none of their n-step neighbours is in this batch
    with_all = _nstep_returns(guided, buffer, all_idx)
    pos = {int(i): k for k, i in enumerate(all_idx)}
    np.testing.assert_allclose(_nstep_returns(guided, buffer, alone), with_all[[pos[int(i)] for i in alone]], rtol=1e-6)
    for i in alone[:5]:
        np.testing.assert_allclose(_nstep_returns(guided, buffer, np.array([i])), with_all[pos[int(i)]], rtol=1e-6)

    # ... and the target is the unshaped one plus the discounted bonuses of the n-step window
    unshaped = copy.deepcopy(buffer)
    unshaped.rew[all_idx] = guidance.env_reward(buffer[all_idx])
    base = _nstep_returns(plain, unshaped, all_idx)
    bonus = np.zeros(len(buffer.rew))
    bonus[all_idx] = guidance.bonus_of(buffer[all_idx])
    end = buffer.done.copy()
    end[buffer.unfinished_index()] = True  # Tianshou's n-step window also stops at the newest step
    expected, cur, alive = np.zeros(len(all_idx)), all_idx.copy(), np.ones(len(all_idx), bool)
    for k in range(n):
        expected += alive * guided.gamma**k * bonus[cur]
        alive &= ~end[cur]
        cur = buffer.next(cur)
    np.testing.assert_allclose(with_all - base, expected, rtol=1e-5, atol=1e-4)
    assert np.abs(expected).max() > 0.1


def test_ppo_advantages_and_returns_use_the_stored_bonus(tmp_path):
    bonus = 0.5
    plain, _ = guided_algorithm(tmp_path / "plain", "ppo", "CartPole-v1", {})
    guided, ctx = guided_algorithm(tmp_path / "guided", "ppo", "CartPole-v1", {"c": ConstantBonus(bonus)})
    guided.load_state_dict(plain.state_dict())
    buffer, _ = _collect(guided, ctx, 128, random=False)
    batch, indices = buffer.sample(0)
    unshaped = copy.deepcopy(batch)
    unshaped.rew = guidance.env_reward(batch)
    b0 = plain._preprocess_batch(unshaped, buffer, indices)
    b1 = guided._preprocess_batch(copy.deepcopy(batch), buffer, indices)
    d_ret = _np(b1.returns) - _np(b0.returns)
    np.testing.assert_allclose(_np(b1.adv) - _np(b0.adv), d_ret, atol=1e-5)
    done = _np(batch.done).astype(bool)
    np.testing.assert_allclose(d_ret[done], bonus, atol=1e-4)  # last step of an episode: only its own bonus
    assert d_ret[~done].max() > bonus * 1.5, "earlier steps see later bonuses through GAE"


class SmallObsBonus(ObsBonus):
    """ObsBonus at a hundredth of the scale (a real run trains on it)."""

    @hookimpl
    def shape_reward(self, batch):
        return super().shape_reward(batch) * 0.01


def test_shape_reward_meets_each_transition_once_and_never_inside_an_update(tmp_path):
    plugin = SmallObsBonus()
    cfg = from_dict(
        {
            "env": "CartPole-v1", "algo": "dqn", "steps": 600, "seed": 0, "out": str(tmp_path / "run"), "preset": "none",
            "train": {"num_envs": 2, "num_test_envs": 1, "test_episodes": 1, "epoch_steps": 300, "checkpoint": False},
            "dqn": {"start_steps": 100, "steps_per_collect": 16, "batch_size": 32, "buffer_size": 1000, "n_step": 3},
        }
    )
    result = train(cfg, extra_plugins={"count": plugin})
    assert plugin.inside_update == 0
    assert sum(plugin.sizes) == result.summary["env_steps"], "every collected transition, once"
    assert plugin.sizes[0] == 100  # the random warm-up, in one call
    assert set(plugin.sizes[1:]) == {16}  # then one call per collection
    assert result.summary["counters"]["shaped_transitions"] == result.summary["env_steps"]


# -- who advised a step ---------------------------------------------------------------------


class EveryOtherStep(AlwaysAction):
    """Advises on its odd calls only (``None`` otherwise, so the next method gets its turn)."""

    @hookimpl
    def refine_action(self, act, env_ids):
        advice = super().refine_action(act, env_ids)
        return advice if self.calls % 2 else None


def test_advised_by_names_the_method_that_advised_each_step(tmp_path):
    first, second = EveryOtherStep(1), AlwaysAction(0, envs=(0,))
    algorithm, ctx = guided_algorithm(tmp_path, "ppo", "CartPole-v1", {"first": first, "second": second})
    assert ctx.methods == ["first", "second"]
    buffer, _ = _collect(algorithm, ctx, 64, random=False)
    batch = buffer[buffer.sample_indices(0)]  # env 0's 32 steps, then env 1's
    by_first, by_second = guidance.advised_by(ctx, batch, "first"), guidance.advised_by(ctx, batch, "second")
    odd = np.tile(np.arange(32) % 2 == 0, 2)  # the first's calls 1, 3, 5, ... are steps 0, 2, 4, ...
    env0 = np.arange(64) < 32
    np.testing.assert_array_equal(by_first, odd)
    np.testing.assert_array_equal(by_second, ~odd & env0)
    np.testing.assert_array_equal(np.asarray(batch.policy.advised), by_first | by_second)
    np.testing.assert_array_equal(np.asarray(batch.policy.advised_by)[~(by_first | by_second)], -1)
    np.testing.assert_array_equal(np.asarray(batch.act)[by_first], 1)
    np.testing.assert_array_equal(np.asarray(batch.act)[by_second], 0)
    assert not guidance.advised_by(ctx, batch, "nobody").any()
    assert not guidance.advised_by(ctx, Batch(obs=np.zeros((3, 4))), "first").any()


# -- replay buffers ----------------------------------------------------------------------------


def _cartpole_rows(n: int, rew: float = 1.0, start: float = 0.0) -> Batch:
    obs = (start + np.arange(n, dtype=np.float32))[:, None].repeat(4, 1) * 0.01
    return Batch(
        obs=obs, act=np.zeros(n, dtype=np.int64), rew=np.full(n, rew), obs_next=obs + 0.01,
        terminated=np.arange(n) == n - 1, truncated=np.zeros(n, dtype=bool),
    )


def _mixed_with_data(ratio: float, **kwargs):
    from guidedrl.train.buffers import MixedReplayBuffer

    buffer = MixedReplayBuffer(400, 2, 100, ratio=ratio, **kwargs)
    for t in range(150):  # the agent's data, as the collector adds it (one row per env)
        rows = _cartpole_rows(2, start=t)
        rows.policy = Batch(advised=np.zeros(2, bool), advised_by=np.full(2, -1), bonus=np.zeros(2))
        buffer.add(rows, buffer_ids=[0, 1])
    buffer.add_second(_cartpole_rows(60, rew=5.0))
    return buffer


def test_mixed_buffer_samples_the_second_source_at_its_ratio():
    np.random.seed(0)
    for ratio in (0.0, 0.25, 0.8):
        buffer = _mixed_with_data(ratio)
        assert buffer.second_len() == 60 and len(buffer) == 360
        second = 0
        for _ in range(100):
            batch, idx = buffer.sample(64)
            assert len(idx) == 64
            from_second = idx >= buffer._split
            np.testing.assert_array_equal(np.asarray(batch.rew)[from_second], 5.0)  # D_2's rows are D_2's data
            second += from_second.sum()
        share = second / 6400
        assert abs(share - ratio) < 4 * np.sqrt(ratio * (1 - ratio) / 6400) + 1e-9, (ratio, share)
        np.testing.assert_allclose(batch.weight, 1.0)  # uniform, no own weights: all 1


def test_mixed_buffer_weights_and_priorities():
    np.random.seed(1)
    buffer = _mixed_with_data(0.5, second_weight=2.0, alpha=0.6)
    idx = buffer.add_second(_cartpole_rows(3, rew=5.0, start=100), weight=[0.5, 0.0, 1.0])
    w = buffer.weights(idx)
    np.testing.assert_allclose(w, [1.0, 0.0, 2.0])  # own weight x source weight (equal priorities)
    # a large TD error makes a transition's priority, hence its share of the samples, grow
    hot = int(idx[2])
    buffer.update_weight(np.array([hot]), np.array([50.0]))
    _, sampled = buffer.sample(2000)
    hot_share, cold_share = (sampled == hot).mean(), (sampled == int(idx[0])).mean()
    # priority 50 ** 0.6 = 10.5 against 1 for the 62 others of its source, which fills half the batch
    assert 0.05 < hot_share < 0.1 and hot_share > 5 * cold_share, (hot_share, cold_share)
    w = buffer.weights(np.array([hot, int(idx[0])]))
    assert w[0] < w[1]  # ... and its importance weight is the smaller one


@pytest.mark.parametrize("huber_delta", [1.0, 0.0], ids=["huber", "mse"])
def test_mixed_buffer_weights_reach_the_dqn_loss(tmp_path, huber_delta):
    """Zero weight: the sampled rows give no gradient; weight 1: they train the Q-network. With either
    loss (Tianshou's Huber loss drops the weights; GuidedDQN keeps them)."""
    changed = {}
    for weight in (0.0, 1.0):
        algorithm, ctx = guided_algorithm(
            tmp_path / str(weight), "dqn", "CartPole-v1", {}, dqn={"n_step": 1, "target_update_freq": 0, "huber_delta": huber_delta}
        )
        buffer = _mixed_with_data(1.0, second_weight=weight)  # every sampled row from the second source
        before = [p.detach().clone() for p in algorithm.policy.parameters()]
        with policy_within_training_step(algorithm.policy):
            stats = algorithm.update(buffer=buffer, sample_size=32)
        changed[weight] = max(float((p.detach() - b).abs().max()) for p, b in zip(algorithm.policy.parameters(), before, strict=True))
        assert np.isfinite(stats.get_loss_stats_dict()["loss"])
    assert changed[0.0] == 0.0
    assert changed[1.0] > 1e-5


def test_prioritized_replay_from_config_updates_priorities_from_td_errors(tmp_path):
    from tianshou.data import PrioritizedVectorReplayBuffer

    from guidedrl.train.buffers import anneal_beta, make_replay_buffer

    algorithm, ctx = guided_algorithm(
        tmp_path, "dqn", "CartPole-v1", {}, replay={"prioritized": True, "beta": 0.4, "beta_final": 1.0, "beta_anneal_steps": 1000}
    )
    buffer = make_replay_buffer(ctx.config, 256, 2)
    assert isinstance(buffer, PrioritizedVectorReplayBuffer)
    venv = make_vector_env(ctx.adapter, 2, "dummy", seed=0)
    collector = GuidedCollector(algorithm, venv, buffer, exploration_noise=True, ctx=ctx, hook_set=HookSet(ctx.pm))
    collector.reset()
    with policy_within_training_step(algorithm.policy), torch.no_grad():
        collector.collect(n_step=128, random=True)
    venv.close()
    before = buffer.weight[np.arange(256)].copy()
    np.testing.assert_allclose(before[before > 0], before[before > 0][0])  # all new: the same (max) priority
    with policy_within_training_step(algorithm.policy):
        algorithm.update(buffer=buffer, sample_size=32)
    after = buffer.weight[np.arange(256)]
    assert (after != before).sum() >= 16, "the sampled transitions' priorities became their TD errors"
    idx = buffer.sample_indices(0)
    anneal_beta(buffer, ctx.config, 0)
    w_start = np.asarray(buffer[idx].weight)
    assert w_start.min() < w_start.max()  # unequal priorities: unequal importance weights
    anneal_beta(buffer, ctx.config, 500)  # half-way: beta 0.7, a stronger correction
    w_half = np.asarray(buffer[idx].weight)
    assert not np.allclose(w_half, w_start, rtol=1e-6, atol=0)
    np.testing.assert_allclose(w_half, w_start ** (0.7 / 0.4), rtol=1e-5)  # (p / p_min) ** -beta, normalised
    ppo_cfg = from_dict({"env": "CartPole-v1", "algo": "ppo", "replay": {"prioritized": True}})
    assert not isinstance(make_replay_buffer(ppo_cfg, 64, 2), PrioritizedVectorReplayBuffer)  # on-policy: plain


# -- the algorithm registry and discrete SAC ---------------------------------------------------


def test_a_third_party_algorithm_registers_by_name(tmp_path):
    from guidedrl.train.algorithms import ALGORITHMS, GuidedDQN, _build_dqn

    built = []

    def build_double_dqn(config, env, device):
        algorithm, optim = _build_dqn(config, env, device)
        built.append(type(algorithm))
        return algorithm, optim

    ALGORITHMS.register("my-dqn", build_double_dqn, settings=lambda cfg: cfg.dqn, on_policy=False, description="test")
    try:
        assert "my-dqn" in ALGORITHMS
        cfg = from_dict(
            {"env": "CartPole-v1", "algo": "my-dqn", "steps": 200, "out": str(tmp_path / "run"), "preset": "none",
             "train": {"num_envs": 2, "num_test_envs": 1, "test_episodes": 1, "epoch_steps": 200},
             "dqn": {"start_steps": 64, "buffer_size": 500}}
        )
        result = train(cfg)
        assert built == [GuidedDQN]
        assert (result.run_dir / "buffer.npz").exists()  # off-policy: the replay buffer is checkpointed
    finally:
        ALGORITHMS.unregister("my-dqn")


def test_sac_on_discrete_actions_builds_discrete_sac(tmp_path):
    from tianshou.algorithm import DiscreteSAC

    algorithm, ctx = guided_algorithm(tmp_path, "sac", "CartPole-v1", {}, sac={"hidden": [16, 16], "n_step": 3})
    assert isinstance(algorithm, DiscreteSAC)
    buffer, _ = _collect(algorithm, ctx, 64)
    with policy_within_training_step(algorithm.policy):
        stats = algorithm.update(buffer=buffer, sample_size=16).get_loss_stats_dict()
    assert all(np.isfinite(v) for v in stats.values())
    assert int(ctx.act(buffer.obs[:3]).max()) in (0, 1)


@pytest.mark.slow
def test_discrete_sac_learns_cartpole(tmp_path):
    """The shipped CartPole SAC preset (discrete SAC): measured 177 at 20k env steps (seed 0)."""
    cfg = from_dict(
        {"env": "CartPole-v1", "algo": "sac", "steps": 20000, "seed": 0, "out": str(tmp_path / "run"),
         "train": {"num_test_envs": 5, "test_episodes": 10, "epoch_steps": 5000, "checkpoint": False}}
    )
    assert cfg.preset == "cartpole-v1-sac"
    result = train(cfg)
    assert result.summary["best_return"] >= 150, result.summary


# -- a method's own replay buffer, and episodes that know where they were stored -------------------


class OwnBufferAndLateBonus:
    """Supplies the run's replay buffer and, on each finished episode, sets a bonus on its last step
    through the episode's buffer indices (what ACE's critic does)."""

    def __init__(self) -> None:
        self.buffer = None
        self.checked = 0

    def replay_buffer(self, ctx, size, num_envs):
        from guidedrl.train.buffers import MixedReplayBuffer

        self.buffer = MixedReplayBuffer(size, num_envs, 64, ratio=0.0)
        return self.buffer

    @hookimpl
    def identify_critical_states(self, ctx, episodes):
        from guidedrl import guidance

        assert ctx.replay is self.buffer
        for ep in episodes:
            assert ep.indices is not None and len(ep.indices) == len(ep)
            np.testing.assert_array_equal(ctx.replay.obs[ep.indices], ep.obs)
            np.testing.assert_array_equal(ctx.replay.act[ep.indices], ep.act)
            guidance.set_bonus(ctx.replay, ep.indices[-1:], 5.0)
            self.checked += 1
        return None


def test_a_method_supplies_the_replay_buffer_and_episode_indices_reach_it(tmp_path):
    plugin = OwnBufferAndLateBonus()
    cfg = from_dict(
        {
            "env": "CartPole-v1", "algo": "dqn", "steps": 400, "seed": 0, "out": str(tmp_path / "run"), "preset": "none",
            "train": {"num_envs": 2, "num_test_envs": 1, "test_episodes": 1, "epoch_steps": 400, "checkpoint": False},
            "dqn": {"start_steps": 50, "steps_per_collect": 16, "batch_size": 32, "buffer_size": 1000},
        }
    )
    # with a shape_reward plugin too: its bonus is added to the late one, not written over it
    train(cfg, extra_plugins={"own": plugin, "count": SmallObsBonus()})
    assert plugin.checked > 0
    buf = plugin.buffer
    ends = np.nonzero(np.asarray(buf.policy.bonus) >= 5.0)[0]  # every slot (empty ones hold 0)
    assert len(ends) == plugin.checked and buf.done[ends].all()


def test_mixed_buffer_set_priority_shapes_sampling_within_a_source():
    from tianshou.data import Batch

    from guidedrl.train.buffers import MixedReplayBuffer

    buf = MixedReplayBuffer(20, 1, 10, ratio=1.0, alpha=1.0)
    rows = Batch(obs=np.arange(4.0)[:, None], act=np.zeros(4, np.int64), rew=np.zeros(4),
                 obs_next=np.arange(4.0)[:, None], terminated=np.zeros(4, bool), truncated=np.ones(4, bool))
    idx = buf.add_second(rows)
    buf.set_priority(idx, [1.0, 1.0, 1.0, 97.0])
    assert buf.max_priority == pytest.approx(97.0)
    np.random.seed(0)
    drawn = buf.sample_indices(2000)
    assert set(drawn) <= set(idx) and np.mean(drawn == idx[3]) > 0.9  # 97 / 100 of the mass
    w = buf.weights(idx)
    assert w[3] < w[0]  # the importance-sampling correction goes the other way

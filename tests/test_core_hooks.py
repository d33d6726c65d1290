"""What each guidance hook does to a run, checked at the algorithm level and in short real runs.

Algorithm-level tests build the algorithm exactly as ``train`` does (``build_algorithm`` +
``attach_guidance``), fill a Tianshou buffer with a few real env steps and compare the algorithm's
targets/weights with and without a plugin (same initial weights).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from guidedrl_core_testkit import (
    AlwaysAction,
    ConstantBonus,
    EpisodeRecorder,
    ExpertDemos,
    L2Loss,
    expert_rollouts,
    guided_algorithm,
    make_ctx,
    read_json,
    tiny_ppo,
)
from tianshou.data import Batch, Collector, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from guidedrl import CriticalState, Demonstrations, Episode, PolicyUpdate, hookimpl
from guidedrl.config import from_dict
from guidedrl.errors import HookError
from guidedrl.records import read_metrics
from guidedrl.train import hooks, train
from guidedrl.train.collector import GuidedCollector
from guidedrl.train.hooks import HookSet
from guidedrl.train.vector import make_vector_env


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _fill(algorithm, ctx, n_steps: int, num_envs: int = 2, seed: int = 0, *, guided: bool = False) -> VectorReplayBuffer:
    """A buffer of ``n_steps`` real env steps (random actions, or the guided collector's)."""
    venv = make_vector_env(ctx.adapter, num_envs, "dummy", seed=seed)
    buffer = VectorReplayBuffer(n_steps, num_envs)
    if guided:
        collector = GuidedCollector(algorithm, venv, buffer, exploration_noise=True, ctx=ctx, hook_set=HookSet(ctx.pm))
    else:
        collector = Collector(algorithm, venv, buffer, exploration_noise=True)
    collector.reset()
    try:
        with policy_within_training_step(algorithm.policy), torch.no_grad():
            collector.collect(n_step=n_steps, random=not guided)
    finally:
        venv.close()
    return buffer


def _twins(tmp_path, algo, env, plugins, **config):
    """(algorithm without plugins, algorithm with ``plugins``, its ctx) with identical weights."""
    plain, _ = guided_algorithm(tmp_path / "plain", algo, env, {}, **config)
    guided, ctx = guided_algorithm(tmp_path / "guided", algo, env, plugins, **config)
    guided.load_state_dict(plain.state_dict())
    return plain, guided, ctx


# -- shape_reward ---------------------------------------------------------------------------


# (the bonus column: where bonuses are stored and how targets use them: tests/test_core_guidance.py)


def test_hook_shape_reward_bonuses_of_several_plugins_are_summed(tmp_path):
    ctx = make_ctx(tmp_path, {"a": ConstantBonus(0.25), "b": ConstantBonus(-1.0), "c": ConstantBonus(0.0)})
    total = hooks.shape_reward(ctx, Batch(rew=np.ones(5)))
    np.testing.assert_allclose(total, -0.75)
    assert ctx.counters["a/shaped_transitions"] == 5
    assert ctx.counters["c/shaped_transitions"] == 0  # a zero bonus shapes nothing


def test_hook_shape_reward_wrong_length_names_the_plugin(tmp_path):
    class Short:
        @hookimpl
        def shape_reward(self, batch):
            return np.zeros(len(batch) - 1)

    ctx = make_ctx(tmp_path, {"short": Short()})
    with pytest.raises(HookError, match="'short', hook 'shape_reward'.*4 bonuses for 5 transitions"):
        hooks.shape_reward(ctx, Batch(rew=np.ones(5)))


# -- update_policy --------------------------------------------------------------------------


def _policy_norm(algorithm) -> float:
    return float(torch.sqrt(sum(p.detach().pow(2).sum() for p in algorithm.policy.parameters())))


@pytest.mark.parametrize(
    ("algo", "env", "config"),
    [
        ("ppo", "CartPole-v1", {}),
        ("dqn", "CartPole-v1", {}),
        ("sac", "Pendulum-v1", {"sac": {"hidden": [32, 32]}}),
    ],
)
def test_hook_update_policy_loss_reaches_the_optimiser_step(tmp_path, algo, env, config):
    plugin = L2Loss(coef=100.0)
    plain, guided, ctx = _twins(tmp_path, algo, env, {"l2": plugin}, **config)
    buffer = _fill(plain, ctx, 128)
    start = _policy_norm(plain)
    assert start == pytest.approx(_policy_norm(guided))
    with policy_within_training_step(plain.policy), policy_within_training_step(guided.policy):
        for algorithm in (plain, guided):
            torch.manual_seed(0)
            if algo == "ppo":
                algorithm.update(buffer=buffer, batch_size=32, repeat=2)
            else:
                for _ in range(8):
                    algorithm.update(buffer=buffer, sample_size=32)
    expected_steps = 2 * (128 // 32) if algo == "ppo" else 8  # PPO: each minibatch; DQN/SAC: each (actor) step
    assert plugin.calls == expected_steps
    if algo == "ppo":
        assert set(plugin.batches) == {128}, "PPO's hook sees the whole on-policy batch"
    shrunk, unguided = _policy_norm(guided), _policy_norm(plain)
    assert shrunk < start - 0.05, f"the L2 term did not shrink the policy ({start:.4f} -> {shrunk:.4f})"
    assert shrunk < unguided - 0.05, f"with L2 {shrunk:.4f}, without {unguided:.4f}"
    stats = guided.pop_guidance_stats()
    assert set(stats) == {"methods/l2/l2", "methods/l2/calls"}
    assert stats["methods/l2/l2"] > 0
    assert guided.pop_guidance_stats() == {}  # popped


def test_hook_update_policy_combines_losses_and_stats_by_plugin(tmp_path):
    class Const:
        def __init__(self, value):
            self.value = value

        @hookimpl
        def update_policy(self):
            return PolicyUpdate(losses={"term": torch.tensor(self.value)}, stats={"seen": 1.0})

    class Nothing:
        @hookimpl
        def update_policy(self):
            return None

    ctx = make_ctx(tmp_path, {"a": Const(1.5), "b": Const(2.0), "n": Nothing()})
    loss, stats = hooks.update_policy(ctx, Batch(), algorithm=None)
    assert float(loss) == pytest.approx(3.5)
    assert stats == {"methods/a/term": 1.5, "methods/a/seen": 1.0, "methods/b/term": 2.0, "methods/b/seen": 1.0}

    class Wrong:
        @hookimpl
        def update_policy(self):
            return {"loss": torch.tensor(1.0)}

    ctx = make_ctx(tmp_path, {"wrong": Wrong()})
    with pytest.raises(HookError, match="'wrong', hook 'update_policy'.*PolicyUpdate"):
        hooks.update_policy(ctx, Batch(), algorithm=None)


# -- refine_action and PPO ------------------------------------------------------------------


def test_hook_refine_action_advised_steps_get_zero_advantage_in_ppo(tmp_path):
    advisor = AlwaysAction(1, envs=(0,))  # env 0 always pushes right; env 1 follows the policy
    plain, guided, ctx = _twins(tmp_path, "ppo", "CartPole-v1", {"adv": advisor}, ppo={"advantage_normalization": True})
    buffer = _fill(guided, ctx, 256, guided=True)
    half = 128
    # The collector executed the advice and stored the mask.
    np.testing.assert_array_equal(buffer.act[:half], 1)
    np.testing.assert_array_equal(buffer.policy.advised[:half], True)
    np.testing.assert_array_equal(buffer.policy.advised[half:], False)
    assert ctx.counters["adv/advised_steps"] == half == ctx.counters["advised_steps"]
    assert advisor.calls == half  # once per vectorised step

    batch, indices = buffer.sample(0)
    b = guided._preprocess_batch(copy.deepcopy(batch), buffer, indices)
    adv = _np(b.adv)
    advised = np.asarray(b.policy.advised, dtype=bool)
    assert advised.sum() == half
    np.testing.assert_array_equal(adv[advised], 0.0)
    own = adv[~advised]
    assert np.count_nonzero(own) >= 0.95 * len(own)
    # advantages are normalised over the policy's own steps of the whole batch
    assert own.mean() == pytest.approx(0.0, abs=1e-5)
    assert own.std(ddof=1) == pytest.approx(1.0, abs=1e-3)
    # Without normalisation, the own steps keep exactly the unguided advantages.
    plain_b = plain._preprocess_batch(copy.deepcopy(batch), buffer, indices)
    raw, _ = guided_algorithm(
        tmp_path / "raw", "ppo", "CartPole-v1", {"adv": AlwaysAction(1, envs=(0,))}, ppo={"advantage_normalization": False}
    )  # explicit: the CartPole preset normalises advantages
    raw.load_state_dict(plain.state_dict())
    raw_b = raw._preprocess_batch(copy.deepcopy(batch), buffer, indices)
    np.testing.assert_allclose(_np(raw_b.adv)[~advised], _np(plain_b.adv)[~advised], atol=1e-6)
    assert np.count_nonzero(_np(plain_b.adv)[advised]) > 0.9 * half  # unguided PPO would have used them
    np.testing.assert_array_equal(_np(raw_b.adv)[advised], 0.0)
    before = [p.detach().clone() for p in guided.policy.parameters()]
    with policy_within_training_step(guided.policy):
        stats = guided.update(buffer=buffer, batch_size=64, repeat=1).get_loss_stats_dict()
    assert np.isfinite(stats["loss"]) and stats["gradient_steps"] == 256 // 64
    assert any(not torch.equal(a, b) for a, b in zip(before, guided.policy.parameters(), strict=True))


@pytest.mark.parametrize("order", [("zero", "one"), ("one", "zero")])
def test_hook_refine_action_two_methods_in_one_run_order_decides(tmp_path, order):
    class Mixed(AlwaysAction):
        @hookimpl
        def shape_reward(self, batch):
            return np.full(len(batch), 0.1)

    plugins = {"zero": Mixed(0), "one": Mixed(1)}
    cfg = tiny_ppo(tmp_path / "run", steps=512, methods=list(order), ppo={"steps_per_collect": 256})
    result = train(from_dict(cfg), extra_plugins=plugins)
    counters = result.summary["counters"]
    first, second = order
    env_steps = result.summary["env_steps"]
    assert counters[f"{first}/advised_steps"] == counters["advised_steps"] == env_steps
    assert counters.get(f"{second}/advised_steps", 0) == 0
    assert plugins[second].calls == 0
    # refine_action is asked once per vectorised training step and never during evaluation
    assert plugins[first].calls == env_steps // cfg["train"]["num_envs"]
    # non-firstresult hooks still run for both methods
    assert counters[f"{first}/shaped_transitions"] > 0 and counters[f"{second}/shaped_transitions"] > 0
    assert read_json(result.run_dir / "summary.json")["methods"] == list(order)


# -- identify_critical_states ---------------------------------------------------------------


def _episode(n: int, offset: float = 0.0) -> Episode:
    obs = np.arange(n * 2, dtype=np.float32).reshape(n, 2) + offset
    return Episode(obs=obs, act=np.zeros(n, int), rew=np.ones(n), obs_next=obs + 1)


def test_hook_identify_critical_states_union_keeps_max_score(tmp_path):
    class Marks:
        def __init__(self, marks):
            self.marks = marks

        @hookimpl
        def identify_critical_states(self, episodes):
            return [CriticalState(episode=e, t=t, obs=episodes[e].obs[t], score=s, reason=r) for e, t, s, r in self.marks]

    a = Marks([(0, 0, 0.5, "a0"), (1, 2, 0.9, "a12")])
    b = Marks([(0, 0, 0.8, "b0"), (1, 2, 0.1, "b12"), (0, 3, 0.3, "b3")])
    ctx = make_ctx(tmp_path, {"a": a, "b": b})
    episodes = [_episode(4), _episode(5, 100.0)]
    found = hooks.identify_critical_states(ctx, episodes)
    got = {(c.episode, c.t): (c.score, c.reason, c.source) for c in found}
    assert got == {(0, 0): (0.8, "b0", "b"), (1, 2): (0.9, "a12", "a"), (0, 3): (0.3, "b3", "b")}
    assert [(c.episode, c.t) for c in found] == [(0, 0), (0, 3), (1, 2)]
    assert ctx.critical_states == found
    assert ctx.counters["critical_states"] == 3
    hooks.identify_critical_states(ctx, episodes)  # accumulates over calls
    assert len(ctx.critical_states) == 3 + 3
    assert ctx.counters["critical_states"] == 6


def test_hook_identify_critical_states_receives_finished_episodes_in_a_run(tmp_path):
    recorder = EpisodeRecorder(score=0.5)

    class LastStep:
        @hookimpl
        def identify_critical_states(self, episodes):
            out = []
            for i, ep in enumerate(episodes):
                out.append(CriticalState(episode=i, t=0, obs=ep.obs[0], score=0.2, reason="lower than the recorder's"))
                out.append(CriticalState(episode=i, t=len(ep) - 1, obs=ep.obs[-1], score=1.0, reason="fell"))
            return out

    cfg = tiny_ppo(tmp_path / "run", steps=1024, methods=["rec", "last"])
    result = train(from_dict(cfg), extra_plugins={"rec": recorder, "last": LastStep()})
    episodes = recorder.episodes
    assert episodes and all(n > 0 for n in recorder.calls)
    for ep in episodes:
        assert isinstance(ep, Episode)
        n = len(ep)
        assert len(ep.obs) == len(ep.act) == len(ep.rew) == len(ep.obs_next) == n > 0
        assert ep.obs.shape == (n, 4) and ep.act.shape == (n,)
        np.testing.assert_array_equal(ep.rew, 1.0)  # CartPole: +1 per step
        np.testing.assert_allclose(ep.obs[1:], ep.obs_next[:-1])  # consecutive steps of one episode
        assert ep.terminated == (n < 500)
        assert set(np.unique(ep.act)) <= {0, 1}
    assert sum(len(ep) for ep in episodes) <= result.summary["env_steps"]
    row = read_metrics(result.run_dir)[-1]
    assert row["train/episodes"] == len(episodes)
    assert np.mean([ep.ret for ep in episodes]) == pytest.approx(row["train/return"])  # whole episodes
    ctx = recorder.ctx
    # union with max score: t=0 from the recorder (0.5 > 0.2), the last step from LastStep
    assert len(ctx.critical_states) == result.summary["counters"]["critical_states"]
    assert len(ctx.critical_states) == sum(2 if len(ep) > 1 else 1 for ep in episodes)
    starts = [c for c in ctx.critical_states if c.t == 0]
    assert all(c.source == "rec" and c.score == 0.5 for c in starts)
    assert all(c.source == "last" for c in ctx.critical_states if c.t > 0)


def test_hook_identify_critical_states_episodes_are_whole_across_ppo_updates(tmp_path, monkeypatch):
    returns: list[float] = []
    original = GuidedCollector.collect

    def collect(self, *args, **kwargs):
        stats = original(self, *args, **kwargs)
        returns.extend(float(r) for r in stats.returns)
        return stats

    monkeypatch.setattr(GuidedCollector, "collect", collect)
    recorder = EpisodeRecorder()
    train(from_dict(tiny_ppo(tmp_path / "run", steps=1024, methods=["rec"])), extra_plugins={"rec": recorder})
    assert [ep.ret for ep in recorder.episodes] == returns
    assert {ep.env_id for ep in recorder.episodes} == set(range(4))


# -- generate_demonstrations + pretraining --------------------------------------------------


def test_hook_generate_demonstrations_concatenated_and_tagged(tmp_path):
    def demo(n, source=""):
        z = np.zeros(n)
        return Demonstrations(obs=np.zeros((n, 4)), act=z, rew=z, obs_next=np.zeros((n, 4)), terminated=z, truncated=z, source=source)

    class One:
        @hookimpl
        def generate_demonstrations(self):
            return demo(3)

    class Two:
        @hookimpl
        def generate_demonstrations(self):
            return [demo(2), demo(4, source="named-by-plugin")]

    ctx = make_ctx(tmp_path, {"one": One(), "two": Two()})
    demos = hooks.generate_demonstrations(ctx)
    assert sorted((d.source, len(d)) for d in ctx.demos) == [("named-by-plugin", 4), ("one", 3), ("two", 2)]
    assert ctx.demos == demos
    assert ctx.counters["demo_transitions"] == 9

    class Wrong:
        @hookimpl
        def generate_demonstrations(self):
            return {"obs": []}

    with pytest.raises(HookError, match="'wrong', hook 'generate_demonstrations'"):
        hooks.generate_demonstrations(make_ctx(tmp_path, {"wrong": Wrong()}))


def _bc_config(out, **extra):
    return tiny_ppo(
        out,
        steps=64,
        train={"num_envs": 1, "epoch_steps": 64, "num_test_envs": 4, "test_episodes": 4},
        ppo={"steps_per_collect": 64, "repeat": 1, "batch_size": 64},
        **extra,
    )


@pytest.mark.slow
def test_hook_generate_demonstrations_expert_demos_are_cloned_before_training(tmp_path):
    plugin = ExpertDemos(episodes=4)
    result = train(from_dict(_bc_config(tmp_path / "bc", methods=["expert"], pretrain={"steps": 300})), extra_plugins={"expert": plugin})
    s = result.summary
    assert s["counters"]["demo_transitions"] >= 4 * 400  # the expert balances (almost) every episode
    assert s["best_return"] > 200, f"the cloned policy should balance the pole, got {s['best_return']}"
    first = read_metrics(result.run_dir)[0]
    assert first["env_steps"] == 0
    assert first["pretrain/loss_last"] < 0.5 * first["pretrain/loss_first"]
    # the same run without pre-training stays near random
    control = train(from_dict(_bc_config(tmp_path / "control", methods=["expert"])), extra_plugins={"expert": ExpertDemos(1)})
    assert control.summary["best_return"] < 100
    assert "pretrain/loss_first" not in read_metrics(control.run_dir)[0]


@pytest.mark.slow
def test_hook_generate_demonstrations_default_plugin_loads_npz(tmp_path):
    from guidedrl.registry import make_adapter

    cols = expert_rollouts(make_adapter("CartPole-v1"), episodes=4, seed=7)
    path = tmp_path / "demos.npz"
    np.savez(path, **cols)
    result = train(from_dict(_bc_config(tmp_path / "npz", pretrain={"steps": 300, "demos_path": str(path)})))
    assert result.summary["counters"]["demo_transitions"] == len(cols["rew"])
    assert result.summary["best_return"] > 200
    assert "pretrain/loss_last" in read_metrics(result.run_dir)[0]


def test_default_plugin_without_demos_path_generates_nothing(tmp_path):
    ctx = make_ctx(tmp_path)
    assert hooks.generate_demonstrations(ctx) == []
    assert ctx.demos == []

"""guidedrl's faster paths through Tianshou give exactly Tianshou's results.

- The training collector's lean step loop (``GuidedCollector.lean_steps``; for DQN also its
  Q-network actions without the policy's ``Batch``es) stores what Tianshou's ``Collector._collect``
  stores: every buffer column, the episode returns, the stored indices each transition is shaped at,
  the episodes handed to ``identify_critical_states`` and the torch RNG state afterwards (so the
  actions sampled next are the same too).
- ``GuidedPPO``'s update (minibatches cut from the columns PPO reads, parameters to clip listed once)
  gives the same losses and the same weights as Tianshou's, bit for bit.
- ``GuidedDQN``'s lean update (targets and losses from the buffer's arrays, no ``Batch``es) gives the
  same losses, weights (target network and optimiser state included) and RNG states as Tianshou's
  ``update``, bit for bit, for plain and double targets, Huber and squared loss, 1- and n-step
  returns, with and without a target network; it leaves every other case to Tianshou.
- Every guided algorithm's update skips Tianshou's ``train()`` switch when it would set no flag
  (SAC's losses, weights and RNG states stay Tianshou's, bit for bit).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from guidedrl_core_testkit import AlwaysAction, EpisodeRecorder, L2Loss, guided_algorithm
from tianshou.algorithm import PPO
from tianshou.algorithm.algorithm_base import Algorithm
from tianshou.algorithm import DQN
from tianshou.data import Batch, PrioritizedVectorReplayBuffer, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from guidedrl.train import numba_cache
from guidedrl.train.algorithms import GuidedAlgorithmMixin, GuidedDQN, GuidedPPO
from guidedrl.train.collector import GuidedCollector, _stack_numeric_infos
from guidedrl.train.hooks import HookSet
from guidedrl.train.vector import make_vector_env


@pytest.fixture(autouse=True, scope="module")
def _as_in_a_run():
    numba_cache.enable()  # the buffers' kernels from disk, as in every run (else ~20 s of compiling here)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as runs do (train.torch_threads); tiny batches crawl on a busy machine otherwise
    yield
    torch.set_num_threads(threads)


def _collect(algorithm, ctx, *, lean: bool, num_envs: int, per_env: int, n_step: int, calls: int, random_first: bool):
    torch.manual_seed(123)
    np.random.seed(123)
    venv = make_vector_env(ctx.adapter, num_envs, "dummy", seed=7)
    buffer = VectorReplayBuffer(per_env * num_envs, num_envs)
    collector = GuidedCollector(algorithm, venv, buffer, exploration_noise=True, ctx=ctx, hook_set=HookSet(ctx.pm))
    collector.lean_steps = lean
    collector.reset()
    stats, indices = [], []
    try:
        with policy_within_training_step(algorithm.policy), torch.no_grad():
            for i in range(calls):
                stats.append(collector.collect(n_step=n_step, random=random_first and i == 0))
                indices.append(collector.new_indices())
                collector.shape_new_transitions()
    finally:
        venv.close()
    return buffer, stats, indices, collector.pop_finished(), torch.get_rng_state()


def _assert_same_batch(a: Batch, b: Batch, where: str = "") -> None:
    assert set(a.get_keys()) == set(b.get_keys()), where
    for key in a.get_keys():
        x, y = a[key], b[key]
        if isinstance(x, Batch):
            _assert_same_batch(x, y, f"{where}.{key}")
        else:
            assert x.dtype == y.dtype, f"{where}.{key}"
            np.testing.assert_array_equal(x, y, err_msg=f"{where}.{key}")


@pytest.mark.parametrize(
    ("algo", "env", "plugins"),
    [
        ("ppo", "CartPole-v1", {}),
        # advice on env 1 and the step hook that assembles episodes for identify_critical_states
        ("ppo", "CartPole-v1", {"advice": AlwaysAction(1, envs=(1,)), "recorder": EpisodeRecorder()}),
        ("ppo", "Pendulum-v1", {}),  # Gaussian policy, episodes end by truncation
        ("dqn", "CartPole-v1", {}),  # exploration noise; the first collection random (warm-up)
    ],
    ids=["ppo-cartpole", "ppo-cartpole-guided", "ppo-pendulum", "dqn-cartpole"],
)
def test_lean_steps_store_what_tianshous_loop_stores(tmp_path, algo, env, plugins):
    algorithm, ctx = guided_algorithm(tmp_path, algo, env, plugins)
    if algo == "dqn":
        algorithm.policy.set_eps_training(0.3)  # greedy actions and noise (the preset starts at eps 1: all noise)
    # 3 envs and 100 steps per call: each call overshoots to 102, as Tianshou's does; 40 slots per env
    # make the buffer wrap around mid-episode
    kwargs = dict(num_envs=3, per_env=40, n_step=100, calls=4 if env == "CartPole-v1" else 8, random_first=algo == "dqn")
    lean = _collect(algorithm, ctx, lean=True, **kwargs)
    tianshou = _collect(algorithm, ctx, lean=False, **kwargs)

    buffer, stats, indices, finished, rng = lean
    t_buffer, t_stats, t_indices, t_finished, t_rng = tianshou
    assert len(buffer) == len(t_buffer) == 120
    _assert_same_batch(buffer[np.arange(len(buffer))], t_buffer[np.arange(len(t_buffer))], "buffer")
    np.testing.assert_array_equal(buffer.last_index, t_buffer.last_index)
    assert sum(s.n_collected_episodes for s in stats) > 0  # episodes ended during the comparison
    for s, t in zip(stats, t_stats, strict=True):
        assert (s.n_collected_steps, s.n_collected_episodes) == (t.n_collected_steps, t.n_collected_episodes)
        np.testing.assert_array_equal(s.returns, t.returns)
    for i, t in zip(indices, t_indices, strict=True):
        np.testing.assert_array_equal(i, t)
    assert len(finished) == len(t_finished)
    for e, t in zip(finished, t_finished, strict=True):
        for key in ("obs", "act", "rew", "obs_next", "indices"):
            np.testing.assert_array_equal(getattr(e, key), getattr(t, key))
        assert (e.env_id, e.start_step, e.terminated) == (t.env_id, t.start_step, t.terminated)
    if "recorder" in plugins:
        assert finished  # the step hook ran
        assert buffer.policy.advised[buffer.info.env_id == 1].all() and not buffer.policy.advised[buffer.info.env_id != 1].any()
    assert torch.equal(rng, t_rng)


def test_q_network_actions_skip_the_policy_forward(tmp_path, monkeypatch):
    # the DQN case above compares the actions (greedy ones and eps 0.3 noise) with Tianshou's loop
    algorithm, ctx = guided_algorithm(tmp_path, "dqn", "CartPole-v1", {})
    calls = []
    forward = type(algorithm.policy).forward
    monkeypatch.setattr(type(algorithm.policy), "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    _collect(algorithm, ctx, lean=True, num_envs=2, per_env=20, n_step=10, calls=1, random_first=False)
    assert calls == []
    _collect(algorithm, ctx, lean=False, num_envs=2, per_env=20, n_step=10, calls=1, random_first=False)
    assert len(calls) == 5


@pytest.mark.parametrize(
    "rows",
    [
        [{"env_id": 0}, {"env_id": 1}],
        [{"x": 1.5, "ok": True, "n": np.int32(3), "v": np.array([1.0, 2.0], np.float32)},
         {"x": 2, "ok": False, "n": np.int32(4), "v": np.array([3.0, 4.0], np.float32)}],
        [{"f": np.float32(1.0)}, {"f": np.float32(2.5)}],
    ],
)
def test_numeric_info_rows_stack_as_tianshou_stacks_them(rows):
    infos = np.array(rows, dtype=object)
    fast = _stack_numeric_infos(infos)
    assert fast is not None
    _assert_same_batch(fast, Batch(info=infos).info)


@pytest.mark.parametrize(
    "rows",
    [
        [{"env_id": 0}, {}],  # a row just reset
        [{}, {}],
        [{"a": 1}, {"b": 1}],  # different keys
        [{"s": "text"}, {"s": "more"}],
        [{"d": {"x": 1}}, {"d": {"x": 2}}],  # nested: Tianshou nests a Batch
        [{"t": torch.zeros(2)}, {"t": torch.ones(2)}],  # Tianshou keeps tensors
        [{"v": np.zeros(2)}, {"v": np.zeros(3)}],  # ragged
        [{"n": None}, {"n": None}],
        [{"big": 2**70}, {"big": 1}],
    ],
)
def test_other_info_rows_are_left_to_tianshou(rows):
    assert _stack_numeric_infos(np.array(rows, dtype=object)) is None


@pytest.mark.parametrize(
    ("env", "plugins"),
    [
        ("CartPole-v1", dict),
        # advised steps (advantages zeroed after normalisation) and an update_policy loss term
        ("CartPole-v1", lambda: {"advice": AlwaysAction(1, envs=(0,)), "l2": L2Loss(coef=1e-3)}),
        ("Pendulum-v1", dict),
    ],
    ids=["cartpole", "cartpole-guided", "pendulum"],
)
def test_guided_ppo_update_is_tianshous_bit_for_bit(tmp_path, monkeypatch, env, plugins):
    config = {"ppo": {"max_grad_norm": 0.5, "advantage_normalization": True}}
    lean, ctx = guided_algorithm(tmp_path / "lean", "ppo", env, plugins(), **config)
    with monkeypatch.context() as m:  # Tianshou's own update loop and optimiser wrapper
        m.setattr(GuidedAlgorithmMixin, "Optimizer", Algorithm.Optimizer)
        m.setattr(GuidedPPO, "_update_with_batch", PPO._update_with_batch)
        plain, _ = guided_algorithm(tmp_path / "plain", "ppo", env, plugins(), **config)
        assert type(getattr(plain.optim, "_inner", plain.optim)) is Algorithm.Optimizer
    plain.load_state_dict(lean.state_dict())
    start = {k: v.clone() for k, v in lean.state_dict().items() if isinstance(v, torch.Tensor)}
    buffer = _collect(lean, ctx, lean=True, num_envs=4, per_env=64, n_step=256, calls=1, random_first=False)[0]
    results = []
    for algorithm in (lean, plain):
        np.random.seed(5)  # minibatch permutations
        torch.manual_seed(5)  # the policy's samples in each forward pass
        with policy_within_training_step(algorithm.policy):
            stats = [algorithm.update(buffer=buffer, batch_size=64, repeat=3) for _ in range(2)]
        results.append(([s.get_loss_stats_dict() for s in stats], algorithm.state_dict(), algorithm.pop_guidance_stats()))
    (losses, weights, guidance), (t_losses, t_weights, t_guidance) = results
    assert losses == t_losses
    assert guidance == t_guidance and bool(guidance) == ("l2" in plugins())
    assert any(not torch.equal(start[k], weights[k]) for k in start)  # it learnt something
    for key in start:
        assert torch.equal(weights[key], t_weights[key]), key


def _rng_states(buffer) -> list:
    return [b._random_state.get_state() for b in (buffer, *getattr(buffer, "buffers", ()))]


@pytest.mark.parametrize(
    "dqn",
    [
        # the CartPole preset's settings (plain target, Huber, clipped gradients), the target synced every 4 updates
        {"double": False, "huber_delta": 1.0, "max_grad_norm": 10.0, "n_step": 1, "target_update_freq": 4},
        {"double": True, "huber_delta": 0.0, "max_grad_norm": 0.0, "n_step": 3, "target_update_freq": 4},
        {"double": True, "huber_delta": 1.0, "max_grad_norm": 0.0, "n_step": 1, "target_update_freq": 0},  # no target net
        {"double": False, "huber_delta": 0.0, "max_grad_norm": 10.0, "n_step": 2, "target_update_freq": 0},
    ],
    ids=["preset", "double-mse-3step", "double-huber-no-target", "plain-mse-2step-no-target"],
)
def test_guided_dqn_update_is_tianshous_bit_for_bit(tmp_path, monkeypatch, dqn):
    config = {"dqn": {"lr": 1e-3, "hidden": [32, 32], **dqn}}
    lean, ctx = guided_algorithm(tmp_path / "lean", "dqn", "CartPole-v1", {}, **config)
    plain, _ = guided_algorithm(tmp_path / "plain", "dqn", "CartPole-v1", {}, **config)
    plain.lean_update = False
    plain.load_state_dict(lean.state_dict())
    start = {k: v.clone() for k, v in lean.state_dict().items() if isinstance(v, torch.Tensor)}
    # 3 envs x 40 slots, 100-step collections: episodes end, the buffer wraps, episodes run unfinished
    buffer = _collect(lean, ctx, lean=True, num_envs=3, per_env=40, n_step=100, calls=3, random_first=True)[0]
    assert buffer.terminated.any() and len(buffer.unfinished_index())
    nstep_calls = []
    tianshou_nstep = Algorithm.compute_nstep_return
    counted = staticmethod(lambda *a, **k: nstep_calls.append(1) or tianshou_nstep(*a, **k))
    monkeypatch.setattr(DQN, "compute_nstep_return", counted)
    results = []
    for algorithm in (lean, plain):
        buf = copy.deepcopy(buffer)
        np.random.seed(5)
        torch.manual_seed(5)
        with policy_within_training_step(algorithm.policy):
            assert algorithm._lean_update_applies(buf) is (algorithm is lean)
            losses = [algorithm.update(buffer=buf, sample_size=16).get_loss_stats_dict() for _ in range(10)]
        results.append((losses, algorithm.state_dict(), _rng_states(buf), np.random.get_state()[1], torch.get_rng_state()))
    assert len(nstep_calls) == 10  # Tianshou's n-step targets ran for the plain algorithm only
    (losses, weights, buf_rng, np_rng, torch_rng), (t_losses, t_weights, t_buf_rng, t_np_rng, t_torch_rng) = results
    assert losses == t_losses
    assert len(set(loss["loss"] for loss in losses)) > 1
    assert any(not torch.equal(start[k], weights[k]) for k in start)  # it learnt something
    for key in start:
        assert torch.equal(weights[key], t_weights[key]), key
    optim, t_optim = weights["_optimizers"][0]["state"], t_weights["_optimizers"][0]["state"]
    for param in optim:
        for key in optim[param]:
            assert torch.equal(optim[param][key], t_optim[param][key]), (param, key)
    for a, b in zip(buf_rng, t_buf_rng, strict=True):
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2:] == b[2:]
    np.testing.assert_array_equal(np_rng, t_np_rng)
    assert torch.equal(torch_rng, t_torch_rng)
    assert lean._iter == plain._iter == 10


def test_guided_dqn_leaves_other_cases_to_tianshou(tmp_path):
    algorithm, ctx = guided_algorithm(tmp_path / "a", "dqn", "CartPole-v1", {})
    buffer = _collect(algorithm, ctx, lean=True, num_envs=2, per_env=30, n_step=40, calls=1, random_first=True)[0]
    with policy_within_training_step(algorithm.policy):
        assert algorithm._lean_update_applies(buffer)
        assert not algorithm._lean_update_applies(VectorReplayBuffer(20, 2))  # empty
        prioritized = PrioritizedVectorReplayBuffer(60, 2, alpha=0.6, beta=0.4)
        prioritized.add(buffer[np.arange(2)], buffer_ids=[0, 1])
        assert len(prioritized) and not algorithm._lean_update_applies(prioritized)  # weights in the loss, TD errors back
        algorithm.lean_update = False
        assert not algorithm._lean_update_applies(buffer)
    assert not algorithm._lean_update_applies(buffer)
    guided, _ = guided_algorithm(tmp_path / "b", "dqn", "CartPole-v1", {"l2": L2Loss(coef=1e-3)})
    with policy_within_training_step(guided.policy):
        assert not guided._lean_update_applies(buffer)  # update_policy reads the update's batch

    class Subclass(GuidedDQN):
        def _target_q(self, buffer, indices):
            return super()._target_q(buffer, indices)

    algorithm.__class__ = Subclass
    algorithm.lean_update = True
    with policy_within_training_step(algorithm.policy):
        assert not algorithm._lean_update_applies(buffer)


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"], ids=["sac", "discrete-sac"])
def test_guided_sac_update_is_tianshous_bit_for_bit(tmp_path, monkeypatch, env):
    config = {"sac": {"hidden": [32, 32], "auto_alpha": True}}
    lean, ctx = guided_algorithm(tmp_path / "lean", "sac", env, {}, **config)
    plain, _ = guided_algorithm(tmp_path / "plain", "sac", env, {}, **config)
    plain.lean_update = False
    plain.load_state_dict(lean.state_dict())
    start = {k: v.clone() for k, v in lean.state_dict().items() if isinstance(v, torch.Tensor)}
    buffer = _collect(lean, ctx, lean=True, num_envs=2, per_env=120, n_step=200, calls=1, random_first=True)[0]
    train_calls = []
    tianshou_train = torch.nn.Module.train
    monkeypatch.setattr(torch.nn.Module, "train", lambda m, mode=True: train_calls.append(m) or tianshou_train(m, mode))
    results = []
    for algorithm in (lean, plain):
        buf = copy.deepcopy(buffer)
        np.random.seed(5)
        torch.manual_seed(5)
        train_calls.clear()
        with policy_within_training_step(algorithm.policy):
            losses = [algorithm.update(buffer=buf, sample_size=32).get_loss_stats_dict() for _ in range(6)]
        # the lean path walks the module tree once (the first update records the flags), Tianshou's twice per update
        switches = sum(m is algorithm for m in train_calls)
        results.append((losses, algorithm.state_dict(), _rng_states(buf), torch.get_rng_state(), switches))
    (losses, weights, buf_rng, torch_rng, switches), (t_losses, t_weights, t_buf_rng, t_torch_rng, t_switches) = results
    assert (switches, t_switches) == (1, 12)
    assert lean._modules_once == list(lean.modules())  # listed once the algorithm was complete
    assert losses == t_losses
    assert any(not torch.equal(start[k], weights[k]) for k in start)
    for key in start:
        assert torch.equal(weights[key], t_weights[key]), key
    for a, b in zip(buf_rng, t_buf_rng, strict=True):
        np.testing.assert_array_equal(a[1], b[1])
    assert torch.equal(torch_rng, t_torch_rng)


def test_train_mode_switch_still_switches_when_a_flag_changed(tmp_path):
    algorithm, _ = guided_algorithm(tmp_path, "sac", "Pendulum-v1", {})
    algorithm.train()
    flags = [m.training for m in algorithm.modules()]
    assert any(flags) and not all(flags)  # the target critics stay in eval mode
    algorithm.policy.eval()  # e.g. a collector's torch_train_mode(policy, False)
    algorithm.train()
    assert [m.training for m in algorithm.modules()] == flags
    algorithm.eval()
    assert not any(m.training for m in algorithm.modules())
    algorithm.train()
    assert [m.training for m in algorithm.modules()] == flags

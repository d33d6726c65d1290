"""Faulty plugins and interrupted runs: what the core validates at the hook boundary, the loss-side
guard, and resume after a kill (at the final step, and reproducing the uninterrupted run)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from guidedrl_core_testkit import make_ctx, read_json, tiny_ppo
from tianshou.data import Batch

from guidedrl import ActionAdvice, CriticalState, PolicyUpdate, hookimpl
from guidedrl.config import from_dict
from guidedrl.errors import ConfigError, GuidedRLError, HookError
from guidedrl.records import read_metrics
from guidedrl.train import hooks, train

# -- test plugins -------------------------------------------------------------------------------


class Boom:
    """Every hook raises, as a buggy plugin does."""

    @hookimpl
    def generate_demonstrations(self):
        raise RuntimeError("Boom: demonstrations")

    @hookimpl
    def identify_critical_states(self, episodes):
        raise RuntimeError("Boom: critical states")

    @hookimpl
    def refine_action(self, act):
        raise RuntimeError("Boom: refine")

    @hookimpl
    def shape_reward(self, batch):
        raise RuntimeError("Boom: shape")

    @hookimpl
    def update_policy(self, batch):
        raise RuntimeError("Boom: update")


class Advise:
    """``refine_action`` returning ``act`` (any array) for the rows of ``mask`` (default: all)."""

    def __init__(self, act, mask=None):
        self.act, self.mask = act, mask

    @hookimpl
    def refine_action(self, act):
        n = len(act)
        advised = self.act(n) if callable(self.act) else self.act
        mask = np.ones(n, bool) if self.mask is None else self.mask(n) if callable(self.mask) else self.mask
        return ActionAdvice(act=advised, mask=mask)


class Bonus:
    """``shape_reward`` returning ``make(len(batch))``."""

    def __init__(self, make):
        self.make = make

    @hookimpl
    def shape_reward(self, batch):
        return self.make(len(batch))


class Loss:
    def __init__(self, losses=None, stats=None):
        self.losses, self.stats = losses or {}, stats or {}

    @hookimpl
    def update_policy(self):
        return PolicyUpdate(losses=dict(self.losses), stats=dict(self.stats))


def _obs(n=4):
    return np.zeros((n, 4), np.float32)


def _refine(ctx, n=4, act=None, space="ctx"):
    import gymnasium as gym

    act = np.zeros(n, np.int64) if act is None else act
    space = gym.spaces.Discrete(2) if space == "ctx" else space
    return hooks.refine_action(ctx, _obs(n), act, [{}] * n, np.arange(n), action_space=space)


# -- a hook that raises -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook", "call"),
    [
        ("generate_demonstrations", lambda ctx: hooks.generate_demonstrations(ctx)),
        ("identify_critical_states", lambda ctx: hooks.identify_critical_states(ctx, [])),
        ("refine_action", lambda ctx: _refine(ctx)),
        ("shape_reward", lambda ctx: hooks.shape_reward(ctx, Batch(rew=np.ones(3)))),
        ("update_policy", lambda ctx: hooks.update_policy(ctx, Batch(), algorithm=None)),
    ],
)
def test_a_hook_that_raises_is_reraised_naming_plugin_and_hook(tmp_path, hook, call):
    ctx = make_ctx(tmp_path, {"buggy": Boom()})
    with pytest.raises(HookError, match=rf"method 'buggy', hook '{hook}': raised RuntimeError: Boom") as err:
        call(ctx)
    assert (err.value.plugin, err.value.hook) == ("buggy", hook)
    assert isinstance(err.value.__cause__, RuntimeError)  # the original traceback is kept
    assert isinstance(err.value, GuidedRLError)  # the CLI prints it as one sentence


def test_a_user_facing_error_from_a_hook_keeps_its_type_and_gains_the_names(tmp_path):
    class Misconfigured:
        @hookimpl
        def shape_reward(self):
            raise ConfigError("mine.scale must be positive")

    ctx = make_ctx(tmp_path, {"mine": Misconfigured()})
    with pytest.raises(ConfigError, match=r"^method 'mine', hook 'shape_reward': mine.scale must be positive$"):
        hooks.shape_reward(ctx, Batch(rew=np.ones(3)))


def test_trace_prints_the_traceback_of_a_hook_that_raised(tmp_path, monkeypatch, capsys):
    ctx = make_ctx(tmp_path, {"buggy": Boom()})
    ctx.pm.trace_hooks = True
    with pytest.raises(HookError):
        hooks.shape_reward(ctx, Batch(rew=np.ones(3)))
    err = capsys.readouterr().err
    assert "guidedrl-trace: shape_reward <- buggy: raised" in err
    assert "Traceback" in err and "Boom: shape" in err


# -- refine_action: legality against the action space ---------------------------------------------


@pytest.mark.parametrize(
    ("act", "match"),
    [
        (lambda n: np.full(n, 2), r"illegal action: \[2, 2, 2, 2\] outside Discrete\(2\)"),
        (lambda n: np.full(n, -1), r"illegal action: \[-1, -1, -1, -1\] outside Discrete\(2\)"),
        (lambda n: np.full(n, np.nan), r"illegal action: 4 NaN .*must be finite"),
        (lambda n: np.ones(n), r"illegal action: dtype float64; Discrete actions must be integers"),
        (lambda n: np.zeros((n, 1), np.int64), r"ActionAdvice.act has shape \(4, 1\); it must have the shape"),
        (lambda n: np.array(["left"] * n), r"ActionAdvice.act must hold numbers"),
    ],
    ids=["out-of-range", "negative", "nan", "float", "2-d", "strings"],
)
def test_refine_action_illegal_actions_stop_at_the_hook_boundary(tmp_path, act, match):
    ctx = make_ctx(tmp_path, {"advisor": Advise(act)})
    with pytest.raises(HookError, match=r"method 'advisor', hook 'refine_action': (advised an )?" + match):
        _refine(ctx)
    assert ctx.counters["advised_steps"] == 0


@pytest.mark.parametrize(
    "mask",
    [
        (np.array([0.5, 0.0, 1.0, 0.0]), r"mask must be boolean, got dtype float64"),
        (np.array([2, 0, 1, 0]), r"mask must be boolean"),
        (np.ones(3, bool), r"mask has shape \(3,\); it must be \(4,\)"),
        (np.ones((4, 1), bool), r"mask has shape \(4, 1\)"),
    ],
)
def test_refine_action_masks_must_be_one_boolean_per_env(tmp_path, mask):
    ctx = make_ctx(tmp_path, {"advisor": Advise(lambda n: np.zeros(n, np.int64), mask=mask[0])})
    with pytest.raises(HookError, match=mask[1]):
        _refine(ctx)


def test_refine_action_unadvised_rows_may_hold_anything_and_int_masks_are_fine(tmp_path):
    act = np.array([1, -7, 0, 99])  # rows 1 and 3 are not advised: ignored
    ctx = make_ctx(tmp_path, {"advisor": Advise(act, mask=np.array([1, 0, 1, 0]))})
    advice = _refine(ctx)
    np.testing.assert_array_equal(advice.mask, [True, False, True, False])
    assert advice.source == "advisor" and ctx.counters["advisor/advised_steps"] == 2


def test_refine_action_box_actions_must_be_finite_and_within_bounds(tmp_path):
    import gymnasium as gym

    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    for bad, match in [(5.0, r"\[5.0\] outside the bounds"), (np.nan, "NaN"), (-np.inf, "inf")]:
        ctx = make_ctx(tmp_path, {"advisor": Advise(np.array([[bad], [0.0]]), mask=np.array([True, False]))})
        with pytest.raises(HookError, match=match):
            _refine(ctx, n=2, act=np.zeros((2, 1), np.float32), space=space)
    ctx = make_ctx(tmp_path, {"advisor": Advise(np.array([[2.0], [np.nan]]), mask=np.array([True, False]))})
    assert _refine(ctx, n=2, act=np.zeros((2, 1), np.float32), space=space).mask.tolist() == [True, False]


def test_refine_action_illegal_advice_stops_a_training_run_with_the_names_in_summary(tmp_path):
    cfg = tiny_ppo(tmp_path / "run", steps=512, methods=["advisor"], ppo={"steps_per_collect": 256})
    with pytest.raises(HookError, match="method 'advisor', hook 'refine_action'.*outside Discrete"):
        train(from_dict(cfg), extra_plugins={"advisor": Advise(lambda n: np.full(n, 5))})
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "failed"
    assert summary["error"].startswith("HookError: method 'advisor', hook 'refine_action'")


# -- shape_reward ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda n: np.full(n, np.nan), r"returned 5 NaN \(first at index 0: nan\) among 5 bonuses"),
        (lambda n: np.r_[np.zeros(n - 1), np.inf], r"returned 1 inf \(first at index 4: inf\)"),
        (lambda n: np.zeros((n, 1)), r"returned an array of shape \(5, 1\) for 5 transitions"),
        (lambda n: np.zeros(n - 1), r"returned 4 bonuses for 5 transitions"),
        (lambda n: ["high"] * n, r"the bonus must hold numbers"),
        (lambda n: [object()] * n, r"the bonus must hold numbers"),
    ],
    ids=["nan", "inf", "2-d column", "short", "strings", "objects"],
)
def test_shape_reward_unusable_bonuses_stop_at_the_hook_boundary(tmp_path, make, match):
    ctx = make_ctx(tmp_path, {"shaper": Bonus(make)})
    with pytest.raises(HookError, match=r"method 'shaper', hook 'shape_reward': " + match):
        hooks.shape_reward(ctx, Batch(rew=np.ones(5)))


def test_shape_reward_accepts_lists_ints_and_tensors(tmp_path):
    ctx = make_ctx(tmp_path, {"a": Bonus(lambda n: [1] * n), "b": Bonus(lambda n: torch.full((n,), 0.5))})
    np.testing.assert_allclose(hooks.shape_reward(ctx, Batch(rew=np.ones(3))), 1.5)


# -- identify_critical_states ---------------------------------------------------------------------


def _episode(n=5):
    from guidedrl.types import Episode

    z = np.zeros((n, 4), np.float32)
    return Episode(obs=z, act=np.zeros(n, np.int64), rew=np.ones(n), obs_next=z, terminated=True, env_id=0, start_step=0)


@pytest.mark.parametrize(
    ("states", "match"),
    [
        (lambda: {"t": 3}, r"must return a list of CriticalState or None, got dict"),
        (lambda: [(0, 3)], r"must return CriticalState items, got tuple"),
        (lambda: [CriticalState(episode=1, t=0, obs=np.zeros(4))], r"CriticalState.episode = 1 does not index the 1 episodes"),
        (lambda: [CriticalState(episode=0, t=5, obs=np.zeros(4))], r"CriticalState.t = 5 is outside episode 0 \(5 steps\)"),
        (lambda: [CriticalState(episode=0, t=1, obs=np.zeros(4), score=float("nan"))], r"CriticalState.score = nan"),
    ],
)
def test_identify_critical_states_unusable_states_stop_at_the_hook_boundary(tmp_path, states, match):
    class Critic:
        @hookimpl
        def identify_critical_states(self, episodes):
            return states()

    ctx = make_ctx(tmp_path, {"critic": Critic()})
    with pytest.raises(HookError, match=r"method 'critic', hook 'identify_critical_states': " + match):
        hooks.identify_critical_states(ctx, [_episode()])


# -- update_policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upd", "match"),
    [
        (Loss({"x": torch.tensor(float("nan"))}), r"loss 'x' is nan; loss terms must be finite"),
        (Loss({"x": torch.tensor(float("inf"))}), r"loss 'x' is inf"),
        (Loss({"x": torch.ones(3)}), r"loss 'x' is a torch.float32 tensor of shape \(3,\); loss terms must be scalar"),
        (Loss({"x": 0.5}), r"loss 'x' is float; loss terms must be scalar float tensors"),
        (Loss({"x": torch.tensor(1)}), r"loss 'x' is a torch.int64 tensor"),
        (Loss(stats={"s": "high"}), r"stat 's' is str, not a number"),
    ],
)
def test_update_policy_unusable_losses_stop_at_the_hook_boundary(tmp_path, upd, match):
    ctx = make_ctx(tmp_path, {"lossy": upd})
    with pytest.raises(HookError, match=r"method 'lossy', hook 'update_policy': " + match):
        hooks.update_policy(ctx, Batch(), algorithm=None)


# -- the loss-side guard ----------------------------------------------------------------------------


def test_check_losses_names_the_method_whose_bonus_reached_the_update(tmp_path):
    ctx = make_ctx(tmp_path, {"huge": Bonus(lambda n: np.full(n, 1e30)), "small": Bonus(lambda n: np.ones(n))})
    hooks.begin_update(ctx)
    hooks.shape_reward(ctx, Batch(rew=np.ones(4)))
    hooks.check_losses(ctx, {"loss": 1.0, "gradient_steps": 4})  # finite: nothing happens
    with pytest.raises(HookError, match=r"method 'huge', hook 'shape_reward': the training loss became non-finite .*loss/vf = inf.*bonuses reached 1e\+30; also in this update: 'small'"):
        hooks.check_losses(ctx, {"loss/vf": math.inf, "loss": 1.0})
    hooks.begin_update(ctx)
    with pytest.raises(GuidedRLError, match="no method's bonus or loss term") as err:
        hooks.check_losses(ctx, {"loss": math.nan})
    assert not isinstance(err.value, HookError)


@pytest.mark.parametrize(
    ("algo", "bonus", "match"),
    [
        ("ppo", 1e30, r"hook 'shape_reward': the training loss became non-finite"),
        ("ppo", np.nan, r"hook 'shape_reward': returned \d+ NaN"),
        ("dqn", 1e30, r"hook 'shape_reward': the training loss became non-finite"),
        ("dqn", np.nan, r"hook 'shape_reward': returned \d+ NaN"),
    ],
)
def test_huge_or_nan_bonuses_stop_the_run_before_a_checkpoint_holds_garbage(tmp_path, algo, bonus, match):
    # DQN with the squared error: the preset's Huber loss keeps a 1e30 bonus's loss finite (see below)
    over = {"ppo": {"steps_per_collect": 256}} if algo == "ppo" else {"dqn": {"start_steps": 256, "batch_size": 32, "huber_delta": 0.0}}
    cfg = tiny_ppo(tmp_path / "run", algo=algo, steps=1024, methods=["shaper"], train={"epoch_steps": 256}, **over)
    with pytest.raises(HookError, match="method 'shaper', " + match):
        train(from_dict(cfg), extra_plugins={"shaper": Bonus(lambda n: np.full(n, bonus))})
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "failed"
    for row in read_metrics(tmp_path / "run"):  # no null (non-finite) losses were logged
        assert all(v is not None for k, v in row.items() if k.startswith("loss")), row
    ckpt = tmp_path / "run" / "checkpoint.pt"
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["learner"]["algorithm"]
        assert all(torch.isfinite(v).all() for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point())


def test_huge_bonus_under_dqns_huber_loss_keeps_weights_finite(tmp_path):
    """The Huber loss is linear in the TD error and the preset clips gradients, so a 1e30 bonus gives
    a large but finite loss: the run goes on (nothing non-finite to stop for) and its checkpoint
    holds finite weights."""
    cfg = tiny_ppo(tmp_path / "run", algo="dqn", steps=1024, methods=["shaper"], train={"epoch_steps": 256},
                   dqn={"start_steps": 256, "batch_size": 32})
    config = from_dict(cfg)
    assert config.dqn.huber_delta == 1.0 and config.dqn.max_grad_norm == 10.0  # the CartPole DQN preset
    train(config, extra_plugins={"shaper": Bonus(lambda n: np.full(n, 1e30))})
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "finished"
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)["learner"]["algorithm"]
    assert all(torch.isfinite(v).all() for v in state.values() if isinstance(v, torch.Tensor) and v.is_floating_point())


# -- multi-agent: the same checks, naming the agent -------------------------------------------------

MA = {
    "env": "factory:human-machine-v0", "steps": 512, "seed": 0, "env_kwargs": {"horizon": 16},
    "train": {"num_envs": 2, "epoch_steps": 256, "test_episodes": 2, "num_test_envs": 2},
    "marl": {"steps_per_collect": 128, "batch_size": 64, "repeat": 1},
}


def test_multiagent_illegal_advice_and_nan_bonus_name_plugin_hook_and_agent(tmp_path):
    cfg = {**MA, "out": str(tmp_path / "a"), "methods": ["advisor"]}
    with pytest.raises(HookError, match=r"method 'advisor', hook 'refine_action': advised an illegal action for agent '\w+'"):
        train(from_dict(cfg), extra_plugins={"advisor": Advise(lambda n: np.full(n, 99))})
    cfg = {**MA, "out": str(tmp_path / "b"), "methods": ["shaper"]}
    with pytest.raises(HookError, match=r"method 'shaper', hook 'shape_reward': returned \d+ NaN"):
        train(from_dict(cfg), extra_plugins={"shaper": Bonus(lambda n: np.full(n, np.nan))})
    cfg = {**MA, "out": str(tmp_path / "c"), "methods": ["shaper"]}
    with pytest.raises(HookError, match=r"method 'shaper', hook 'shape_reward': the training loss became non-finite"):
        train(from_dict(cfg), extra_plugins={"shaper": Bonus(lambda n: np.full(n, 1e30))})


# -- resume -------------------------------------------------------------------------------------------

TIMING = ("wall_s", "train/steps_per_s", "time/online_s")


def _figures(run_dir):
    summary = read_json(run_dir / "summary.json")
    last = {k: v for k, v in read_metrics(run_dir)[-1].items() if k not in TIMING}
    return summary["status"], summary["env_steps"], summary["final_return"], summary["best_return"], last


class _Killed(BaseException):
    """Stands in for SIGKILL in-process: nothing after it runs (not even ``except Exception``)."""


def _kill_after_checkpoint(monkeypatch, module, name, nth):
    """Make the run stop right after its ``nth`` checkpoint is written."""
    original = getattr(module, name)
    count = {"n": 0}

    def save(*args, **kwargs):
        original(*args, **kwargs)
        count["n"] += 1
        if count["n"] == nth:
            raise _Killed

    monkeypatch.setattr(module, name, save)
    return original


def _killed_then_resumed(tmp_path, monkeypatch, cfg, nth):
    from guidedrl.records import RunRecorder

    run = tmp_path / "killed"
    cfg = {**cfg, "out": str(run)}
    with monkeypatch.context() as m:
        _kill_after_checkpoint(m, RunRecorder, "save_checkpoint", nth)
        with pytest.raises(_Killed):
            train(from_dict(cfg))
    (run / "summary.json").unlink(missing_ok=True)  # a SIGKILL leaves no summary
    result = train(from_dict(cfg), resume=True)
    return run, result


@pytest.mark.parametrize(
    "cfg",
    [
        tiny_ppo("x", steps=1536, train={"epoch_steps": 512}, ppo={"steps_per_collect": 256}),
        tiny_ppo("x", algo="dqn", steps=1536, train={"epoch_steps": 512}, dqn={"start_steps": 256, "buffer_size": 4000}),
        {**MA, "steps": 768},
    ],
    ids=["ppo", "dqn", "multiagent"],
)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, monkeypatch, cfg):
    reference = train(from_dict({**cfg, "out": str(tmp_path / "reference")})).run_dir
    run, _ = _killed_then_resumed(tmp_path, monkeypatch, cfg, nth=2)
    assert _figures(run) == _figures(reference)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(read_metrics(run)) == strip(read_metrics(reference))


@pytest.mark.parametrize(
    "cfg",
    [
        tiny_ppo("x", steps=1024, train={"epoch_steps": 512}, ppo={"steps_per_collect": 256}),
        tiny_ppo("x", steps=2048, train={"epoch_steps": 512, "stop_return": 1.0}, ppo={"steps_per_collect": 256}),
        {**MA, "steps": 512},
    ],
    ids=["ppo", "ppo-stopped-early", "multiagent"],
)
def test_a_run_killed_after_its_final_checkpoint_resumes_to_finished(tmp_path, monkeypatch, cfg):
    reference = train(from_dict({**cfg, "out": str(tmp_path / "reference")}))
    epochs = read_json(reference.run_dir / "summary.json").get("epochs", len(read_metrics(reference.run_dir)))
    nth = len([r for r in read_metrics(reference.run_dir) if r["env_steps"] > 0])  # the last checkpoint
    run, result = _killed_then_resumed(tmp_path, monkeypatch, cfg, nth=nth)
    assert result.summary["status"] == "finished"
    assert _figures(run) == _figures(reference.run_dir)
    assert result.summary.get("epochs", epochs) == epochs
    assert result.summary.get("stopped_early") == reference.summary.get("stopped_early")
    assert math.isfinite(result.summary["final_return"]) and math.isfinite(result.summary["best_return"])


def test_checkpoint_rng_state_loads_without_pickle(tmp_path):
    from guidedrl.train import seeding

    ctx = make_ctx(tmp_path)
    ctx.rng.random(3)
    np.random.rand(2)
    state = seeding.rng_state(ctx)
    path = tmp_path / "c.pt"
    torch.save({"rng": state}, path)
    loaded = torch.load(path, weights_only=True)["rng"]
    expect = (torch.rand(2), np.random.rand(2), ctx.rng.random(2), __import__("random").random())
    np.random.rand(5), torch.rand(5), ctx.rng.random(5)
    seeding.restore_rng_state(ctx, loaded)
    again = (torch.rand(2), np.random.rand(2), ctx.rng.random(2), __import__("random").random())
    assert torch.equal(expect[0], again[0]) and np.array_equal(expect[1], again[1])
    assert np.array_equal(expect[2], again[2]) and expect[3] == again[3]
    json.loads(loaded["plain"])  # plain JSON, no objects

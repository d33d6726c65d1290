"""MuJoCo adapters: described states, bounded actions, and the shipped policy experts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from guidedrl.envs import InvalidAction
from guidedrl.registry import make_adapter
from guidedrl_env_mujoco import HalfCheetahAdapter, HopperAdapter
from guidedrl_env_mujoco.adapters import EXPERTS

ADAPTERS = [HopperAdapter, HalfCheetahAdapter]


@pytest.mark.parametrize("cls", ADAPTERS)
def test_describe_names_every_number(cls):
    adapter = cls()
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    desc = adapter.describe(obs)
    assert list(desc.state) == list(adapter.obs_names)
    np.testing.assert_allclose([desc.state[n] for n in adapter.obs_names], obs, atol=1e-4)
    assert json.loads(desc.json()) == desc.state
    assert "torso" in desc.text
    env.close()


@pytest.mark.parametrize("cls", ADAPTERS)
def test_actions_are_a_bounded_vector(cls):
    vocab = cls().vocabulary
    assert vocab.kind == "box" and vocab.dim == len(cls.joint_names)
    ok = vocab.parse([0.5] * vocab.dim)
    assert ok.shape == (vocab.dim,)
    for bad in ([1.5] + [0.0] * (vocab.dim - 1), [0.0] * (vocab.dim + 1), "forward", [float("nan")] * vocab.dim):
        with pytest.raises(InvalidAction):
            vocab.parse(bad)
    assert "thigh" in vocab.prompt_text()


@pytest.mark.parametrize("cls", ADAPTERS)
def test_expert_checkpoint_loads_safely(cls):
    data = torch.load(EXPERTS / f"{cls.env_id}.pt", weights_only=True)
    assert data["env_id"] == cls.env_id
    assert data["weights"][0].shape[1] == len(cls.obs_names)
    assert data["weights"][-1].shape[0] == len(cls.joint_names)


def episode_return(adapter, env, policy, seed):
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    steps = 0
    while not done and steps < 400:
        obs, r, term, trunc, _ = env.step(policy(obs))
        total += r
        done = term or trunc
        steps += 1
    return total


@pytest.mark.parametrize("cls", ADAPTERS)
def test_expert_beats_random(cls):
    adapter = cls()
    env = adapter.make()
    expert = adapter.expert
    rng = np.random.default_rng(0)
    vocab = adapter.vocabulary
    expert_ret = np.mean([episode_return(adapter, env, lambda o: np.asarray(expert.act(adapter.describe(o).state), np.float32), s) for s in range(2)])
    random_ret = np.mean([episode_return(adapter, env, lambda o: vocab.sample(rng), s) for s in range(2)])
    env.close()
    assert expert_ret > random_ret + 100


def test_expert_judgements_follow_the_gap():
    adapter = HopperAdapter()
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    env.close()
    state = adapter.describe(obs).state
    expert = adapter.expert
    best = expert.act(state)
    assert adapter.vocabulary.parse(best) is not None  # legal
    assert expert.implicit_reward(state, best) == pytest.approx(1.0)
    far = [-np.sign(v) if v else 1.0 for v in best]
    assert expert.implicit_reward(state, far) < 0.5
    crit = expert.critical_states([state, state], [best, far], [1.0, 1.0])
    assert [c["t"] for c in crit] == [1]


def test_registered():
    assert isinstance(make_adapter("Hopper-v5"), HopperAdapter)
    assert isinstance(make_adapter("HalfCheetah-v5"), HalfCheetahAdapter)

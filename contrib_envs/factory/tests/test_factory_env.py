"""The factory envs: PettingZoo API, determinism, shared interface, dynamics, descriptions, expert."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from guidedrl.registry import make_adapter
from guidedrl_env_factory import DOMAINS, FactoryParallelEnv, FactorySim

IDS = [f"factory:{d}-v0" for d in DOMAINS]


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("n_agents", [2, 4, 7])
def test_parallel_api(env_id, n_agents):
    env = make_adapter(env_id, n_agents=n_agents).make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test warns on a dead agent given data, missing keys, ...
        parallel_api_test(env, num_cycles=250)


@pytest.mark.parametrize("env_id", IDS)
def test_seed_determinism(env_id):
    adapter = make_adapter(env_id)
    parallel_seed_test(adapter.make)

    def rollout(seed):
        env = adapter.make()
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        out = [np.stack(list(obs.values()))]
        rews = []
        while env.agents:
            obs, rew, *_ = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
            if obs:
                out.append(np.stack(list(obs.values())))
            rews.append(list(rew.values()))
        return np.stack(out), np.asarray(rews)

    o1, r1 = rollout(7)
    o2, r2 = rollout(7)
    o3, _ = rollout(8)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(o1, o3)


@pytest.mark.parametrize("n_agents", [3, 4, 6])
def test_same_agent_interface_across_domains(n_agents):
    envs = [make_adapter(i, n_agents=n_agents).make() for i in IDS]
    ref = envs[0]
    for env in envs[1:]:
        assert env.possible_agents == ref.possible_agents
        for a in ref.possible_agents:
            assert env.observation_space(a) == ref.observation_space(a)
            assert env.action_space(a) == ref.action_space(a)


def _sim(**kw):
    sim = FactorySim(DOMAINS["human-machine"], n_agents=4, n_stations=6, seed=0, **kw)
    sim.queue[:] = 5.0
    sim.health[:] = 1.0
    return sim


def test_two_claims_on_one_station_are_a_conflict():
    sim = _sim()
    rew, _ = sim.step(np.array([[1, 1, 0, 0]]))  # agents 0 and 1 both claim station 0
    assert sim.loc[0, 0] == 1 and sim.loc[0, 1] == 0  # the lower index is admitted, the other blocked
    assert sim.conflicts[0] == 1
    assert rew[0, 1] == pytest.approx(rew[0, 0] - DOMAINS["human-machine"].conflict_penalty)
    # a station in use blocks an entrant, even when its user works on
    sim.step(np.array([[1, 1, 0, 0]]))
    assert sim.loc[0, 1] == 0 and sim.conflicts[0] == 2
    assert sim.completed[0] > 0  # agent 0 worked


def test_walking_then_working_and_skill():
    sim = _sim()
    sim.step(np.array([[1, 0, 0, 0]]))  # walk to station 0
    assert sim.completed[0] == 0
    sim.step(np.array([[1, 0, 0, 0]]))  # work: a human at a manual station
    assert sim.completed[0] == pytest.approx(0.5 * (1 - 0.5 * sim.fatigue[0, 0] + 0.5 * DOMAINS["human-machine"].fatigue_work), abs=0.05)


def test_fatigue_rises_with_work_recovers_with_rest_and_exhaustion_blocks_work():
    sim = _sim()
    d = DOMAINS["human-machine"]
    for _ in range(3):
        sim.step(np.array([[1, 0, 3, 4]]))
    assert sim.fatigue[0, 0] > 0.1
    assert sim.fatigue[0, 2] == 0.0  # robots do not tire
    high = sim.fatigue[0, 0]
    sim.step(np.array([[0, 0, 3, 4]]))
    assert sim.fatigue[0, 0] == pytest.approx(high - d.fatigue_rest)
    sim.fatigue[0, 0] = 1.0
    done_before = sim.completed[0]
    sim.loc[0, 0] = 1
    rew, _ = sim.step(np.array([[1, 0, 0, 0]]))
    assert sim.completed[0] == done_before  # exhausted: no work
    assert sim.overworked[0] == 1 and rew[0, 0] < rew[0, 1]


def test_wear_breakdown_and_maintenance():
    sim = _sim()
    sim.loc[0, 2] = 4  # robot at station 3
    sim.health[0, 3] = 0.005
    sim.step(np.array([[0, 0, 4, 0]]))
    assert sim.broken[0, 3]
    done = sim.completed[0]
    sim.step(np.array([[0, 0, 4, 0]]))
    assert sim.completed[0] == done  # nothing on a broken station
    m = sim.n_stations
    for _ in range(3):
        sim.step(np.array([[0, 0, 1 + m + 3, 0]]))  # maintain station 3
    assert not sim.broken[0, 3] and sim.health[0, 3] >= 0.5


def test_batched_sim_is_vectorised():
    sim = FactorySim(DOMAINS["warehouse"], n_agents=4, n_envs=32, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        rew, trunc = sim.step(rng.integers(0, sim.n_actions, size=(32, 4)))
    assert rew.shape == (32, 4) and trunc.shape == (32,)
    assert sim.observe().shape == (32, 4, sim.obs_dim)
    obs = sim.observe()
    assert obs.min() >= 0.0 and obs.max() <= 1.0


def _assert_close(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _assert_close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_close(x, y)
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=2e-3)
    else:
        assert a == b


@pytest.mark.parametrize("env_id", IDS)
def test_describe_rebuilds_the_exact_state_from_observations(env_id):
    adapter = make_adapter(env_id)
    env = adapter.make()
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(23):
        obs, *_ = env.step({a: int(rng.integers(env.action_space(a).n)) for a in env.agents})
    desc = adapter.describe(obs)
    _assert_close(desc.state, env.state_dict())  # observations are float32: equal to ~1e-3
    assert "jobs waiting" in desc.text and "agent_3" in desc.text
    assert adapter.domain.station_word in desc.text


@pytest.mark.parametrize("env_id", IDS)
def test_expert_beats_random_and_never_conflicts(env_id):
    adapter = make_adapter(env_id)

    def play(policy, seed):
        env = adapter.make()
        obs, infos = env.reset(seed=seed)
        total = 0.0
        rng = np.random.default_rng(seed)
        while env.agents:
            act = adapter.expert.act(adapter.describe(obs).state) if policy == "expert" else {
                a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
            obs, rew, _, _, infos = env.step(act)
            total += sum(rew.values())
        return total, infos["agent_0"]["metrics"]

    for seed in range(3):
        exp_ret, exp_m = play("expert", seed)
        rnd_ret, rnd_m = play("random", seed)
        assert exp_ret > rnd_ret + 100
        assert exp_m["conflicts"] == 0
        assert exp_m["task_completion"] > 0.5 > rnd_m["task_completion"]


def test_env_render_ansi_and_registry_summary():
    env = FactoryParallelEnv("maintenance", render_mode="ansi")
    env.reset(seed=0)
    assert "machine" in env.render()
    from guidedrl.registry import ENVS

    assert "maintenance" in ENVS.get("factory:maintenance-v0").summary.lower()

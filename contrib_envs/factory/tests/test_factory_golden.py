"""The factory envs reproduce, bit for bit, rollouts recorded before the speed work on the step path.

``fixtures/golden_rollouts.npz`` was recorded from the unoptimised code (commit 7d3ef32) with

    .venv/bin/python contrib_envs/factory/tests/test_factory_golden.py --record

Each case fixes a domain, an agent count, a seed and an action sequence (random actions, some given
as numpy ints, some agents left out of the dict, several episodes with auto-reset through
``reset()`` without a seed) and records every observation, reward, termination, truncation and info
metric of the PettingZoo parallel API, plus the batched ``FactorySim`` (rewards, truncations,
observations, metrics) over 3 floors. Any change to the simulator or the env wrapper that changes a
single value fails here. Re-record only for an intended change of the dynamics.

The other tests here hold the one-floor step in plain Python (``FactorySim.step_one``, what the
PettingZoo env runs) and the vectorised step to each other, bit for bit, from edited corner states.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from guidedrl_env_factory import DOMAINS, FactoryParallelEnv, FactorySim

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "golden_rollouts.npz"
METRICS = ("task_completion", "jobs_done", "conflicts", "overwork_steps", "broken_stations")
CASES = [(d, n) for d in sorted(DOMAINS) for n in (2, 4, 7)]
HORIZON = 40  # short episodes, so the recorded rollouts cross several resets
N_STEPS = 90


def _parallel_rollout(domain: str, n_agents: int) -> dict[str, np.ndarray]:
    env = FactoryParallelEnv(domain, n_agents=n_agents, horizon=HORIZON)
    rng = np.random.default_rng(1234 + n_agents)
    n_act = env.action_space("agent_0").n
    obs, infos = env.reset(seed=11 * n_agents)
    o_l, r_l, term_l, trunc_l, m_l = [], [], [], [], []

    def record(obs, infos):
        o_l.append(np.stack([obs[a] for a in env.possible_agents]))
        m_l.append([[infos[a]["metrics"][k] for k in METRICS] for a in env.possible_agents])

    record(obs, infos)
    for t in range(N_STEPS):
        if not env.agents:
            obs, infos = env.reset()
            record(obs, infos)
        acts = rng.integers(0, n_act, size=n_agents)
        action = {}
        for i, a in enumerate(env.possible_agents):
            if t % 7 == 3 and i == n_agents - 1:
                continue  # left out: the env reads it as 0 (rest)
            action[a] = np.int64(acts[i]) if (t + i) % 3 == 0 else int(acts[i])
        obs, rew, term, trunc, infos = env.step(action)
        record(obs, infos)
        r_l.append([rew[a] for a in env.possible_agents])
        term_l.append([term[a] for a in env.possible_agents])
        trunc_l.append([trunc[a] for a in env.possible_agents])
    return {
        "obs": np.stack(o_l),
        "rew": np.asarray(r_l, dtype=np.float64),
        "term": np.asarray(term_l, dtype=bool),
        "trunc": np.asarray(trunc_l, dtype=bool),
        "metrics": np.asarray(m_l, dtype=np.float64),
        "state": env.state(),
    }


def _batched_rollout(domain: str, n_agents: int) -> dict[str, np.ndarray]:
    import attrs

    sim = FactorySim(attrs.evolve(DOMAINS[domain], horizon=HORIZON), n_agents=n_agents, n_envs=3, seed=5)
    rng = np.random.default_rng(99)
    o_l, r_l, tr_l, m_l = [sim.observe()], [], [], []
    for _ in range(N_STEPS):
        rew, trunc = sim.step(rng.integers(0, sim.n_actions, size=(3, n_agents)))
        r_l.append(rew)
        tr_l.append(trunc.copy())
        m = sim.metrics()
        m_l.append(np.stack([m[k] for k in METRICS]))
        o_l.append(sim.observe())
        if trunc.any():
            sim.reset_envs(trunc)
            o_l.append(sim.observe())
    return {"obs": np.stack(o_l), "rew": np.stack(r_l), "trunc": np.stack(tr_l), "metrics": np.stack(m_l)}


def _all() -> dict[str, np.ndarray]:
    out = {}
    for domain, n in CASES:
        for kind, fn in (("pz", _parallel_rollout), ("sim", _batched_rollout)):
            for k, v in fn(domain, n).items():
                out[f"{domain}/{n}/{kind}/{k}"] = v
    return out


@pytest.mark.parametrize(("domain", "n_agents"), CASES)
def test_parallel_api_matches_recorded_rollout(domain, n_agents):
    ref = np.load(FIXTURE)
    got = _parallel_rollout(domain, n_agents)
    for k, v in got.items():
        want = ref[f"{domain}/{n_agents}/pz/{k}"]
        assert v.dtype == want.dtype, k
        np.testing.assert_array_equal(v, want, err_msg=f"{domain} n={n_agents} {k}")


@pytest.mark.parametrize(("domain", "n_agents"), CASES)
def test_batched_sim_matches_recorded_rollout(domain, n_agents):
    ref = np.load(FIXTURE)
    got = _batched_rollout(domain, n_agents)
    for k, v in got.items():
        want = ref[f"{domain}/{n_agents}/sim/{k}"]
        assert v.dtype == want.dtype, k
        np.testing.assert_array_equal(v, want, err_msg=f"{domain} n={n_agents} {k}")


STATE = ("queue", "health", "broken", "fatigue", "loc", "t", "completed", "arrived", "conflicts", "overworked")


@pytest.mark.parametrize("domain", sorted(DOMAINS))
@pytest.mark.parametrize(
    ("n_agents", "n_stations"), [(1, None), (2, 1), (3, None), (4, None), (5, 3), (6, None), (9, None), (4, 13)]
)
def test_one_floor_python_step_equals_batched_numpy_step(domain, n_agents, n_stations):
    """``step_one`` (plain Python, what the PettingZoo env runs) and the vectorised step agree bit for bit.

    Random actions from identically seeded simulators, with the state edited now and then into corners
    (exhausted humans, nearly worn or broken equipment, full or empty queues, agents moved by hand).
    """
    import attrs

    dom = attrs.evolve(DOMAINS[domain], horizon=60)
    py = FactorySim(dom, n_agents=n_agents, n_stations=n_stations, seed=3)
    vec = FactorySim(dom, n_agents=n_agents, n_stations=n_stations, seed=3)
    rng = np.random.default_rng(n_agents * 31 + (n_stations or 0))
    m = py.n_stations
    for step in range(400):
        if step % 23 == 5:  # edit both states the same way
            i, j = int(rng.integers(n_agents)), int(rng.integers(m))
            edits = {
                "fatigue": (0, i, float(rng.choice([1.0, 0.999, 0.97]))),
                "health": (0, j, float(rng.choice([0.0, 0.004, 0.29, 0.5]))),
                "broken": (0, j, bool(rng.integers(2))),
                "queue": (0, j, float(rng.choice([0.0, 0.1, dom.max_queue]))),
            }
            name = ("fatigue", "health", "broken", "queue")[step % 4]
            for sim in (py, vec):
                getattr(sim, name)[edits[name][:2]] = edits[name][2]
            if n_agents > 1 and step % 3 == 0:  # move an agent to a free station (or the rest area)
                free = sorted(set(range(1, m + 1)) - set(py.loc[0].tolist()))
                to = int(rng.choice(free)) if free and rng.random() < 0.8 else 0
                for sim in (py, vec):
                    sim.loc[0, i] = to
        a = rng.integers(0, py.n_actions, size=n_agents)
        rew_py, trunc_py = py.step_one(a.tolist())
        rew_vec, trunc_vec = vec._step_batched(a[None, :].astype(np.int64))
        assert rew_py == rew_vec[0].tolist(), step
        assert trunc_py is bool(trunc_vec[0]), step
        for name in STATE:
            x, y = getattr(py, name), getattr(vec, name)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            np.testing.assert_array_equal(x, y, err_msg=f"{name} after step {step}")
        np.testing.assert_array_equal(py.observe(), vec.observe())
        if trunc_py:
            for sim in (py, vec):
                sim.reset_envs(np.ones(1, dtype=bool))


def test_one_floor_step_falls_back_when_two_agents_share_a_station():
    py = FactorySim(DOMAINS["human-machine"], n_agents=4, seed=0)
    vec = FactorySim(DOMAINS["human-machine"], n_agents=4, seed=0)
    for sim in (py, vec):
        sim.loc[0, :2] = 3  # only a hand-edited state puts two agents at one station
    for a in ([3, 3, 0, 1], [3, 3 + py.n_stations, 2, 2], [0, 3, 1, 1]):
        rew_py, _ = py.step_one(a)
        rew_vec, _ = vec._step_batched(np.array([a]))
        assert rew_py == rew_vec[0].tolist()
        for name in STATE:
            np.testing.assert_array_equal(getattr(py, name), getattr(vec, name))


@pytest.mark.parametrize("n", [*range(1, 40), 64, 127, 128, 129, 200])
def test_python_row_sum_adds_in_numpys_order(n):
    from guidedrl_env_factory.sim import _row_sum_for

    rng = np.random.default_rng(n)
    row_sum = _row_sum_for(n)
    for _ in range(50):
        xs = (rng.random(n) * 10.0 ** rng.integers(-4, 4, n)).tolist()
        assert row_sum(xs) == np.array([xs]).sum(axis=1)[0]


def test_step_validates_actions():
    sim = FactorySim(DOMAINS["warehouse"], n_agents=3, seed=0)
    for bad in ([0, 0, -1], [0, sim.n_actions, 0]):
        with pytest.raises(ValueError, match="actions must be in"):
            sim.step(np.array([bad]))
        with pytest.raises(ValueError, match="actions must be in"):
            sim.step_one(bad)
    batch = FactorySim(DOMAINS["warehouse"], n_agents=3, n_envs=2, seed=0)
    with pytest.raises(ValueError, match="actions must be in"):
        batch.step(np.array([[0, 0, 0], [0, -2, 0]]))
    env = FactoryParallelEnv("warehouse", n_agents=3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be in"):
        env.step({"agent_0": 99})


def test_step_returns_fresh_python_types():
    """Rewards are Python floats, flags Python bools, and a step's observations are not overwritten later."""
    env = FactoryParallelEnv("human-machine", n_agents=4)
    obs, _ = env.reset(seed=0)
    first = {a: o.copy() for a, o in obs.items()}
    obs1, rew, term, trunc, infos = env.step(dict.fromkeys(env.agents, 1))
    for a in env.possible_agents:
        assert type(rew[a]) is float and type(term[a]) is bool and type(trunc[a]) is bool
        assert obs1[a].dtype == np.float32 and obs1[a].shape == env.observation_space(a).shape
        np.testing.assert_array_equal(obs[a], first[a])  # returned arrays stay as they were
    saved = {a: o.copy() for a, o in obs1.items()}
    saved_m = {a: dict(i["metrics"]) for a, i in infos.items()}
    env.step(dict.fromkeys(env.agents, 2))
    for a in env.possible_agents:
        np.testing.assert_array_equal(obs1[a], saved[a])
        assert infos[a]["metrics"] == saved_m[a]


if __name__ == "__main__":
    if "--record" not in sys.argv:
        sys.exit("usage: test_factory_golden.py --record   (overwrites the fixture)")
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **_all())
    print(f"recorded {FIXTURE} ({FIXTURE.stat().st_size:,} bytes)")

"""The MPE2 simple_spread adapter: registration, multi-agent flag, description, expert."""

from __future__ import annotations

import numpy as np

from guidedrl.registry import ENVS, make_adapter


def test_registered_and_multi_agent():
    assert "mpe2:simple_spread-v3" in ENVS.ids()
    adapter = make_adapter("mpe2:simple_spread-v3")
    assert adapter.multi_agent
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    assert sorted(obs) == ["agent_0", "agent_1", "agent_2"]
    assert env.action_space("agent_0").n == 5  # discrete actions are forced


def test_describe_gives_positions_and_landmarks():
    adapter = make_adapter("mpe2:simple_spread-v3", N=2)
    env = adapter.make()
    obs, _ = env.reset(seed=1)
    desc = adapter.describe(obs)
    assert len(desc.state["agents"]) == 2 and len(desc.state["landmarks"]) == 2
    pos0 = np.asarray(obs["agent_0"])[2:4]
    assert np.allclose(desc.state["agents"][0]["pos"], pos0, atol=1e-3)
    assert "Landmarks" in desc.text


def test_expert_covers_landmarks_better_than_random():
    adapter = make_adapter("mpe2:simple_spread-v3")

    def play(expert: bool, seed: int) -> float:
        env = adapter.make()
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        total = 0.0
        while env.agents:
            act = adapter.expert.act(adapter.describe(obs).state) if expert else {a: int(rng.integers(5)) for a in env.agents}
            obs, rew, *_ = env.step(act)
            total += sum(rew.values())
        return total

    assert np.mean([play(True, s) for s in range(4)]) > np.mean([play(False, s) for s in range(4)]) + 10

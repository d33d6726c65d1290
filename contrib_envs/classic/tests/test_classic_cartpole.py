"""The CartPole-v1 adapter: registration, description, action parsing and its expert."""

import json

import numpy as np
import pytest

from guidedrl.envs import InvalidAction
from guidedrl.registry import ENVS, make_adapter


def test_registered_through_entry_point():
    entry = ENVS.get("CartPole-v1")
    assert entry is not None and entry.source.endswith("classic")


def test_describe_carries_exact_state_and_words():
    adapter = make_adapter("CartPole-v1")
    obs = np.array([0.1, -0.2, 0.05, 0.3], dtype=np.float32)
    d = adapter.describe(obs)
    assert d.state == {
        "cart_position": pytest.approx(0.1),
        "cart_velocity": pytest.approx(-0.2),
        "pole_angle_rad": pytest.approx(0.05),
        "pole_angular_velocity": pytest.approx(0.3),
    }
    assert "leans right" in d.text and "rotating further right" in d.text
    assert json.loads(d.json())["pole_angle_rad"] == pytest.approx(0.05)


@pytest.mark.parametrize("answer, expected", [(0, 0), ("1", 1), ("push_left", 0), (1.0, 1)])
def test_vocabulary_parses_legal_answers(answer, expected):
    assert make_adapter("CartPole-v1").vocabulary.parse(answer) == expected


@pytest.mark.parametrize("answer", [2, -1, "jump", 0.5, None, True, [0]])
def test_vocabulary_rejects_illegal_answers_with_a_reason(answer):
    with pytest.raises(InvalidAction, match=r"\S"):
        make_adapter("CartPole-v1").vocabulary.parse(answer)


def _rollout(adapter, choose, seed):
    env = adapter.make()
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(500):
        obs, rew, terminated, truncated, _ = env.step(choose(obs))
        total += rew
        if terminated or truncated:
            break
    env.close()
    return total


def test_expert_balances_from_the_json_state_alone():
    adapter = make_adapter("CartPole-v1")
    expert = adapter.expert
    returns = [_rollout(adapter, lambda o: expert.act(adapter.describe(o).state), seed) for seed in range(5)]
    rng = np.random.default_rng(0)
    random_returns = [_rollout(adapter, lambda o: int(rng.integers(2)), seed) for seed in range(5)]
    assert min(returns) == 500
    assert max(random_returns) < 100


def test_expert_marks_near_failure_states_as_critical():
    expert = make_adapter("CartPole-v1").expert
    calm = {"cart_position": 0.0, "cart_velocity": 0.0, "pole_angle_rad": 0.0, "pole_angular_velocity": 0.0}
    tipping = {**calm, "pole_angle_rad": 0.19}
    assert expert.importance(tipping) > 0.9 > 0.1 > expert.importance(calm)
    # A wrong push while tipping is critical; the right one is not.
    states = [tipping, tipping]
    found = expert.critical_states(states, [0, 1], [1.0, 1.0])
    assert [c["t"] for c in found] == [0]

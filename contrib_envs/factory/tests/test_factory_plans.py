"""Plan validation (structure) and execution (legality in a state) on the factory adapters."""

from __future__ import annotations

import pytest

from guidedrl.envs import InvalidAction
from guidedrl.registry import make_adapter


@pytest.fixture
def adapter():
    return make_adapter("factory:human-machine-v0")


@pytest.fixture
def state(adapter):
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    return adapter.describe(obs).state


def test_validate_accepts_objects_triples_names_and_synonyms(adapter):
    plan = adapter.validate_plan([
        {"command": "Work", "parameter": "station_2", "agent": "agent_0"},
        ["repair", 5, "agent_1"],
        {"command": "rest", "parameter": "rest_area", "agent": "2"},
    ])
    assert plan == [
        {"command": "work", "parameter": 2, "agent": "agent_0"},
        {"command": "maintain", "parameter": 5, "agent": "agent_1"},
        {"command": "rest", "parameter": None, "agent": "agent_2"},
    ]


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ("work everyone", "non-empty list"),
        ([], "non-empty list"),
        ([{"command": "teleport", "parameter": 1, "agent": "agent_0"}], "unknown command"),
        ([{"command": "work", "parameter": 1, "agent": "nobody"}], "unknown agent"),
        ([{"command": "work", "parameter": 6, "agent": "agent_0"}], "out of range"),
        ([{"command": "work", "parameter": -1, "agent": "agent_0"}], "out of range"),
        ([{"command": "work", "parameter": "kitchen", "agent": "agent_0"}], "does not name a station"),
        ([{"command": "work", "agent": "agent_0"}], "needs a station"),
        ([{"parameter": 1, "agent": "agent_0"}], "lacks command"),
        ([{"command": "work", "parameter": 1, "agent": "agent_0"}, {"command": "rest", "parameter": 0, "agent": "agent_0"}],
         "already has an instruction"),
    ],
)
def test_validate_rejects_malformed_plans_with_a_reason(adapter, plan, reason):
    with pytest.raises(InvalidAction, match=reason):
        adapter.validate_plan(plan)


def test_conflicts_are_not_validation_errors_but_the_executor_rejects_them(adapter, state):
    plan = adapter.validate_plan([
        {"command": "work", "parameter": 1, "agent": "agent_0"},
        {"command": "work", "parameter": 1, "agent": "agent_1"},
    ])
    actions, rejected = adapter.execute_plan(plan, state)
    assert actions == {"agent_0": 2, "agent_1": 0, "agent_2": 0, "agent_3": 0}
    assert len(rejected) == 1 and "already claimed by agent_0" in rejected[0][1]


def test_executor_rejects_illegal_items_with_reasons(adapter, state):
    state["stations"][3]["broken"] = True
    state["stations"][4]["health"] = 1.0
    state["agents"][0]["fatigue"] = 1.0
    state["agents"][3]["location"] = 5
    plan = adapter.validate_plan([
        {"command": "work", "parameter": 0, "agent": "agent_0"},
        {"command": "work", "parameter": 3, "agent": "agent_1"},
        {"command": "maintain", "parameter": 4, "agent": "agent_2"},
        {"command": "work", "parameter": 5, "agent": "agent_3"},
    ])
    actions, rejected = adapter.execute_plan(plan, state)
    reasons = {item["agent"]: why for item, why in rejected}
    assert "exhausted" in reasons["agent_0"]
    assert "broken" in reasons["agent_1"]
    assert "full health" in reasons["agent_2"]
    assert "agent_3" not in reasons and actions["agent_3"] == 6
    assert actions["agent_0"] == actions["agent_1"] == actions["agent_2"] == 0


def test_expert_plan_is_valid_and_matches_act(adapter, state):
    plan = adapter.expert.plan(state)
    valid = adapter.validate_plan(plan)
    actions, rejected = adapter.execute_plan(valid, state)
    assert not rejected
    assert actions == adapter.expert.act(state)


def test_vocabulary_prompt_names_commands_agents_and_stations(adapter):
    text = adapter.vocabulary.prompt_text()
    for word in ("work", "maintain", "rest", "agent_3", "0..5"):
        assert word in text

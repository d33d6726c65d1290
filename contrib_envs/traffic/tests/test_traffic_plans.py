"""LEED's instruction sequences on the road network: validation, execution, rollouts, hostile plans,
and the simulated LLM answering plan questions from the JSON state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guidedrl.envs import InvalidAction
from guidedrl.registry import make_adapter


@pytest.fixture
def adapter():
    return make_adapter("traffic:grid4x4-v0", n_vehicles=4)


@pytest.fixture
def start(adapter):
    env = adapter.make()
    obs, infos = env.reset(seed=0)
    return env, adapter.describe(obs, infos).state


def _route_items(adapter, state, agent_index):
    """The expert's items of one agent, as ``[Command, Parameter, AgentID]`` triples."""
    return [[it["command"], it["parameter"], it["agent"]] for it in adapter.expert.plan(state)
            if it["agent"] == f"Agent_{agent_index}"]


def test_validate_accepts_triples_objects_and_spellings(adapter):
    plan = adapter.validate_plan([
        ["MoveTo", "Intersection_5", "Agent_3"],
        {"command": "moveto", "parameter": 6, "agent": "agent_3"},
        ("move_to", "intersection 7", "vehicle_2"),
        ["MoveTo", "I8", 1],
    ])
    assert plan == [
        {"command": "MoveTo", "parameter": 5, "agent": "agent_3"},
        {"command": "MoveTo", "parameter": 6, "agent": "agent_3"},
        {"command": "MoveTo", "parameter": 7, "agent": "agent_2"},
        {"command": "MoveTo", "parameter": 8, "agent": "agent_1"},
    ]
    assert adapter.validate_plan({"instructions": [["MoveTo", "Intersection_0", "Agent_0"]]})[0]["parameter"] == 0


@pytest.mark.parametrize(("plan", "reason"), [
    ([["MoveTo", "Intersection_16", "Agent_0"]], "unknown intersection Intersection_16"),
    ([["MoveTo", "Intersection_-1", "Agent_0"]], "does not name an intersection"),
    ([["MoveTo", "Intersection_3", "Agent_4"]], "unknown agent 'Agent_4'"),
    ([["MoveTo", "Intersection_3", "Bob"]], "unknown agent 'Bob'"),
    ([["Teleport", "Intersection_3", "Agent_0"]], "unknown command 'Teleport'"),
    ([["MoveTo", "Intersection_3"]], "got 2 elements"),
    ([{"command": "MoveTo", "agent": "Agent_0"}], "lacks parameter"),
    ([42], "an item must be"),
    ("go east", "must be a list"),
    ([], "empty"),
    ([["MoveTo", "Intersection_1", "Agent_0"]] * 200, "at most 128"),
])
def test_validate_rejects_malformed_items_with_a_reason(adapter, plan, reason):
    with pytest.raises(InvalidAction, match=reason):
        adapter.validate_plan(plan)


def test_expert_plan_executes_to_arrival_with_no_rejections(adapter):
    ro = adapter.rollout_plan(adapter.expert.plan, seed=0)
    assert ro.cut is None and ro.rejected == [] and ro.stuck == {}
    assert ro.arrived == 4 and ro.valid_fraction == 1.0
    # demonstrations: each agent's own transitions, in the env's format
    assert sorted(d.agent for d in ro.demonstrations) == [f"agent_{i}" for i in range(4)]
    for d in ro.demonstrations:
        assert d.obs.shape[1:] == (21,) and d.obs.shape == d.obs_next.shape and len(d.act) == len(d.rew)
        assert d.terminated[-1] and not d.terminated[:-1].any()  # it arrives once, at the end
        assert np.isclose(d.rew.sum(), 1.0 - 0.1 * ro.travel_times[d.agent])


def test_expert_plan_from_a_later_state_still_executes(adapter):
    env = adapter.make()
    obs, infos = env.reset(seed=2)
    for _ in range(4):
        obs, _, _, _, infos = env.step(adapter.expert.act(adapter.describe(obs, infos).state))
    state = adapter.describe(obs, infos).state
    plan = adapter.validate_plan(adapter.expert.plan(state))
    while env.agents:
        acts, rejected = adapter.execute_plan(plan, state)
        assert rejected == []
        obs, _, _, _, infos = env.step({a: acts[a] for a in env.agents})
        if env.agents:
            state = adapter.describe(obs, infos).state
    assert env.sim.metrics(0)["arrival_rate"] == 1.0


def test_non_adjacent_moves_are_rejected_and_the_route_goes_on(adapter, start):
    _, state = start
    items = _route_items(adapter, state, 0)
    first = int(items[0][1].split("_")[1])
    far = next(k for k in range(16) if k not in adapter.executor._dir[state["vehicles"][0]["start"]]
               and k != state["vehicles"][0]["start"])
    plan = [items[0], ["MoveTo", f"Intersection_{far}", "Agent_0"], *items[1:]]
    step = adapter.execute_plan(plan, state)
    assert len(step.rejected) == 1
    item, reason = step.rejected[0]
    assert f"Intersection_{far} is not adjacent to Intersection_{first}" in reason
    ro = adapter.rollout_plan(plan, seed=0)
    assert len(ro.rejected) == 1 and ro.items == len(plan)  # counted once, not once per step
    assert "agent_0" not in ro.stuck  # the rest of its route joins on: it still arrives


def test_a_route_short_of_the_goal_deadlocks_and_is_cut(adapter, start):
    _, state = start
    plan = [_route_items(adapter, state, i)[0] for i in range(4)]  # one move each, then nothing
    ro = adapter.rollout_plan(plan, seed=0)
    assert ro.cut.startswith("deadlock") and ro.arrived == 0
    assert set(ro.stuck) == {f"agent_{i}" for i in range(4)}
    assert "short of its goal" in ro.stuck["agent_0"]
    assert adapter.stuck_agents(plan, state) == {}  # at the start everyone still has a move to make


def test_a_plan_that_runs_past_the_horizon_is_cut():
    adapter = make_adapter("traffic:grid4x4-v0", n_vehicles=4, horizon=6)
    ro = adapter.rollout_plan(adapter.expert.plan, seed=0)
    assert ro.cut.startswith("cut at the horizon (step 6 of 6)") and ro.arrived < 4
    assert all(d.truncated[-1] or d.terminated[-1] for d in ro.demonstrations)


def test_a_route_through_an_intersection_twice_continues_from_its_last_visit(adapter, start):
    _, state = start
    s0 = state["vehicles"][0]["start"]
    nb = next(iter(adapter.executor._dir[s0]))
    detour = [["MoveTo", f"Intersection_{nb}", "Agent_0"], ["MoveTo", f"Intersection_{s0}", "Agent_0"]]
    plan = detour + _route_items(adapter, state, 0)
    step = adapter.execute_plan(plan, state)
    assert step.rejected == [] and step.actions["agent_0"] == adapter.expert.act(state)["agent_0"]


HOSTILE = [
    None, 42, "DROP TABLE roads", b"\x00\xff", {"instructions": "all of them"}, {"plan": []},
    [None, 3.5, float("nan"), "x" * 100_000, {"command": {"nested": [[[]]]}}],
    [["MoveTo", ["Intersection_1"], "Agent_0"], ["MoveTo", {"id": 1}, "Agent_0"], ["MoveTo", 10**400, "Agent_0"]],
    [["MoveTo", "Intersection_1", "Agent_0", "extra"], ["MoveTo", "Intersection_99999999", "Agent_0"]],
    [["MoveTo", float("inf"), "Agent_0"], ["MoveTo", True, "Agent_0"], ["MoveTo", "1e3", "Agent_0"]],
    [["MoveTo", "Intersection_1", "Agent_99"], ["MoveTo", "Intersection_1", "../../etc/passwd"]],
    [["MoveTo", "Intersection_1", None]] * 100_000,
]


def _deep(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


@pytest.mark.parametrize("plan", [*HOSTILE, _deep(10_000), [_deep(5_000)]])
def test_hostile_plans_are_rejected_with_reasons_and_never_crash(adapter, start, plan):
    _, state = start
    with pytest.raises(InvalidAction):
        adapter.validate_plan(plan)
    step = adapter.execute_plan(plan, state)
    assert set(step.actions) == set(adapter.agents) and set(step.actions.values()) == {0}
    assert step.rejected and all(isinstance(r, str) and r for _, r in step.rejected)
    assert all(len(str(item)) < 300 for item, _ in step.rejected)  # bounded excerpts, not the junk itself
    ro = adapter.rollout_plan(plan, seed=0)
    assert ro.cut is not None and ro.arrived == 0 and ro.rejected


def test_good_items_survive_among_junk(adapter, start):
    _, state = start
    good = _route_items(adapter, state, 1)
    plan = ["garbage", *good, [None, None, None], ["MoveTo", "Intersection_77", "Agent_1"]]
    ro = adapter.rollout_plan(plan, seed=0)
    assert len(ro.rejected) == 3 and "agent_1" in ro.travel_times


def test_simulated_llm_answers_plan_questions_from_the_json_state(tmp_path, adapter):
    from guidedrl.config import LLMConfig
    from guidedrl.llm import LLMClient
    from guidedrl_llm_simulated import SimulatedChatModel

    env = adapter.make()
    obs, infos = env.reset(seed=5)
    client = LLMClient(SimulatedChatModel(adapter=adapter), adapter=adapter,
                       config=LLMConfig(cache="off"), run_dir=tmp_path / "run")
    try:
        plan = client.instructions(obs, infos)
    finally:
        client.close()
    assert plan and all(item["command"] == "MoveTo" for item in plan)
    state = adapter.describe(obs, infos).state
    assert plan == adapter.validate_plan(adapter.expert.plan(json.loads(json.dumps(state))))
    ro = adapter.rollout_plan(plan, seed=5)
    assert ro.cut is None and ro.rejected == []

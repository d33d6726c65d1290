"""LCIL phase 1: conflict resolution, plan verdicts and scripted-LLM plans (malformed, conflicting,
out-of-range), through the real LLM layer with LangChain fake chat models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from guidedrl.config import LLMConfig, RunConfig
from guidedrl.context import RunContext
from guidedrl.llm import LLMClient
from guidedrl.plugins import make_manager
from guidedrl.registry import make_adapter
from guidedrl_lcil import LCIL
from guidedrl_lcil.coordination import CoordinationHistory, resolve_conflicts
from guidedrl_lcil.demonstrations import collect_demonstrations, judge_plan

AGENTS = ["agent_0", "agent_1", "agent_2", "agent_3"]


@pytest.fixture
def adapter():
    return make_adapter("factory:human-machine-v0")


@pytest.fixture
def state(adapter):
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    st = adapter.describe(obs).state
    for s in st["stations"]:
        s["broken"], s["health"], s["queue"] = False, 0.9, 4.0
    return st


def w(agent, station, command="work"):
    return {"command": command, "parameter": station, "agent": agent}


def test_conflict_goes_to_the_agent_already_there_and_the_other_moves(adapter, state):
    state["agents"][1]["location"] = 0  # agent_1 stands at station 0
    plan = [w("agent_0", 0), w("agent_1", 0), w("agent_2", 3), w("agent_3", 4)]
    fixed, repairs = resolve_conflicts(plan, state, adapter=adapter, agents=AGENTS)
    by = {i["agent"]: i for i in fixed}
    assert by["agent_1"]["parameter"] == 0
    assert by["agent_0"]["command"] == "work" and by["agent_0"]["parameter"] not in (0, 3, 4)
    assert by["agent_0"]["parameter"] in (1, 2)  # a manual station: where a human is fastest
    assert repairs == [f"agent_0: station 0 is in use by agent_1, agent_0 moves to {by['agent_0']['parameter']}"]
    actions, rejected = adapter.execute_plan(fixed, state)
    assert not rejected


def test_conflict_between_newcomers_goes_to_the_faster_agent(adapter, state):
    plan = [w("agent_0", 4), w("agent_2", 4), w("agent_1", 1), w("agent_3", 5)]  # human vs robot at an automated station
    fixed, repairs = resolve_conflicts(plan, state, adapter=adapter, agents=AGENTS)
    by = {i["agent"]: i for i in fixed}
    assert by["agent_2"]["parameter"] == 4
    assert by["agent_0"]["parameter"] in (0, 2)
    assert repairs == [f"agent_2 and agent_0 both claimed 4; agent_2 keeps it, agent_0 moves to {by['agent_0']['parameter']}"]


def test_a_displaced_agent_rests_when_nothing_useful_is_free(adapter, state):
    for s in state["stations"]:
        s["broken"] = True
    state["stations"][0]["broken"] = False
    plan = [w("agent_0", 0), w("agent_1", 0), w("agent_2", 0), w("agent_3", 0)]
    fixed, repairs = resolve_conflicts(plan, state, adapter=adapter, agents=AGENTS)
    assert [i["command"] for i in fixed] == ["work", "rest", "rest", "rest"]
    assert repairs[0] == "agent_0 and agent_1 both claimed 0; agent_0 keeps it, agent_1 rests"


def test_missing_agents_keep_their_previous_instruction_or_rest(adapter, state):
    previous = {"agent_3": w("agent_3", 5)}
    fixed, repairs = resolve_conflicts([w("agent_0", 0), w("agent_1", 1)], state, adapter=adapter, agents=AGENTS, previous=previous)
    by = {i["agent"]: i for i in fixed}
    assert by["agent_3"] == w("agent_3", 5)
    assert by["agent_2"]["command"] == "rest"
    assert sorted(repairs) == ["agent_2 had no instruction; it rests", "agent_3 had no instruction; it kept its previous one"]


def test_illegal_items_are_moved_to_free_legal_equipment(adapter, state):
    state["stations"][2]["broken"] = True
    fixed, repairs = resolve_conflicts([w("agent_0", 2), w("agent_1", 1), w("agent_2", 3), w("agent_3", 4)], state,
                                       adapter=adapter, agents=AGENTS)
    assert fixed[0] == w("agent_0", 0)  # the free manual station
    assert repairs == ["agent_0: station 2 is broken; it must be maintained before agent_0 can work there, agent_0 moves to 0"]


def test_verdicts_ok_repaired_rejected(adapter, state):
    good = [w("agent_0", 0), w("agent_1", 1), w("agent_2", 3), w("agent_3", 4)]
    assert judge_plan(good, state, adapter=adapter, agents=AGENTS, previous=None, max_repair_frac=0.5)[0] == "ok"
    one_conflict = [w("agent_0", 0), w("agent_1", 0), w("agent_2", 3), w("agent_3", 4)]
    verdict, plan, reasons = judge_plan(one_conflict, state, adapter=adapter, agents=AGENTS, previous=None, max_repair_frac=0.5)
    assert verdict == "repaired" and plan is not None and "both claimed 0" in reasons[0]
    chaos = [w(a, 0) for a in AGENTS]
    verdict, plan, reasons = judge_plan(chaos, state, adapter=adapter, agents=AGENTS, previous=None, max_repair_frac=0.5)
    assert verdict == "rejected" and plan is None and "3 of 4" in reasons[0]
    assert judge_plan(None, state, adapter=adapter, agents=AGENTS, previous=None, max_repair_frac=0.5)[0] == "rejected"


def test_coordination_history_is_rolling():
    h = CoordinationHistory(2)
    assert h.text() is None
    for t in range(3):
        h.add(t, [w("agent_0", t)], ["agent_1 had no instruction; it rests"] if t == 2 else [], f"team reward +{t}.00")
    lines = h.text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("t=1: agent_0→work@1")
    assert "repaired: agent_1 had no instruction" in lines[1]


# -- scripted LLM through the real LLM layer --------------------------------------------------


def _client(adapter, answers: list[str], tmp_path: Path, retries: int = 2) -> LLMClient:
    model = GenericFakeChatModel(messages=iter([AIMessage(content=a) for a in answers]))
    return LLMClient(model, adapter=adapter, config=LLMConfig(cache="off", retries=retries, transient_retries=0), run_dir=tmp_path)


def _answer(items) -> str:
    return json.dumps({"instructions": items})


def _obs(adapter):
    env = adapter.make()
    obs, _ = env.reset(seed=0)
    return obs


def test_malformed_then_valid_plan_is_retried(adapter, tmp_path):
    good = [w("agent_0", 0), w("agent_1", 1), w("agent_2", 3), w("agent_3", 4)]
    with _client(adapter, ["Sure! Here is my plan: work hard.", _answer(good)], tmp_path) as llm:
        plan = llm.instructions(_obs(adapter))
    assert plan == good


def test_out_of_range_station_is_fed_back_and_fixed(adapter, tmp_path):
    bad = [w("agent_0", 17), w("agent_1", 1)]
    good = [w("agent_0", 0), w("agent_1", 1)]
    with _client(adapter, [_answer(bad), _answer(good)], tmp_path) as llm:
        plan = llm.instructions(_obs(adapter))
        summary = llm.summary()
    assert plan == good
    log = (tmp_path / "llm_calls.jsonl").read_text()
    assert "out of range" in log
    assert summary["llm_failures"] == 0


def test_always_invalid_answers_fall_back_to_none(adapter, tmp_path):
    nonsense = _answer([{"command": "teleport", "parameter": -1, "agent": "nobody"}])
    with _client(adapter, [nonsense] * 3, tmp_path) as llm:
        assert llm.instructions(_obs(adapter)) is None


def test_conflicting_plan_passes_validation_and_lcil_repairs_it(adapter, tmp_path):
    conflicting = [w("agent_0", 0), w("agent_1", 0), w("agent_2", 3), w("agent_3", 4)]
    with _client(adapter, [_answer(conflicting)], tmp_path) as llm:
        plan = llm.instructions(_obs(adapter))
    assert plan == conflicting
    state = adapter.describe(_obs(adapter)).state
    verdict, fixed, reasons = judge_plan(plan, state, adapter=adapter, agents=AGENTS, previous=None, max_repair_frac=0.5)
    assert verdict == "repaired"
    assert len({i["parameter"] for i in fixed if i["command"] != "rest"}) == sum(i["command"] != "rest" for i in fixed)


class ScriptedLLM:
    """A stand-in for ``ctx.llm``: cycles through plans, records the history it was given."""

    def __init__(self, script):
        self.script, self.k, self.histories = script, 0, []

    def instructions(self, observations, info=None, *, history=None):
        self.histories.append(history)
        item = self.script[self.k % len(self.script)]
        self.k += 1
        return item


def _ctx(adapter, tmp_path, llm, **lcil):
    cfg = RunConfig(env="factory:human-machine-v0", methods=("lcil",), method_config={"lcil": lcil}, env_kwargs={"horizon": 10})
    pm = make_manager(cfg.methods, cfg.method_config)
    adapter = make_adapter(cfg.env, **cfg.env_kwargs)
    ctx = RunContext(config=cfg, adapter=adapter, pm=pm, run_dir=tmp_path, device=torch.device("cpu"))
    ctx._llm = llm
    return ctx, pm.get_plugin("lcil")


def test_demonstrations_count_ok_repaired_rejected_and_follow_the_plans(adapter, tmp_path):
    good = [w("agent_0", 0), w("agent_1", 1), w("agent_2", 3), w("agent_3", 4)]
    conflict = [w("agent_0", 0), w("agent_1", 0), w("agent_2", 3), w("agent_3", 4)]
    llm = ScriptedLLM([good, conflict, None, [w(a, 5) for a in AGENTS]])
    ctx, plugin = _ctx(adapter, tmp_path, llm, episodes=2, history=3)
    demos = collect_demonstrations(ctx, plugin)
    assert [d.agent for d in demos] == AGENTS
    assert all(len(d) == 20 for d in demos)  # 2 episodes x 10 steps
    assert ctx.counters["lcil/plans_ok"] == 5
    assert ctx.counters["lcil/plans_repaired"] == 5
    assert ctx.counters["lcil/plans_rejected"] == 10  # None and the all-on-one-station plan
    log = ctx.state["lcil"]["log"]
    assert {e["verdict"] for e in log} == {"repaired", "rejected"}
    # step 0 follows the good plan; actions are the env's indices of the plan items
    assert demos[0].act[0] == 1 and demos[1].act[0] == 2 and demos[2].act[0] == 4
    # a rejected plan leaves the previous plan in force
    assert demos[0].act[2] == demos[0].act[1]
    # the rolling coordination history reaches the LLM, with repairs and outcomes
    assert llm.histories[0] is None
    assert any(h and "repaired" in h and "outcome" in h for h in llm.histories)
    assert demos[0].meta["plans"] == {"ok": 5, "repaired": 5, "rejected": 10}
    assert demos[0].meta["pretrain_steps"] == plugin.config.imitation_steps


def test_demonstrations_from_the_expert_are_conflict_free_and_recorded_in_agents_format(tmp_path):
    adapter = make_adapter("factory:human-machine-v0", horizon=10)

    class ExpertLLM:
        def instructions(self, observations, info=None, *, history=None):
            return adapter.validate_plan(adapter.expert.plan(adapter.describe(observations).state))

    ctx, plugin = _ctx(adapter, tmp_path, ExpertLLM(), episodes=1)
    demos = collect_demonstrations(ctx, plugin)
    env = adapter.make()
    assert demos[0].obs.shape == (10, env.observation_space("agent_0").shape[0])
    assert demos[0].obs.dtype == np.float32 and demos[0].act.dtype == np.int64
    assert ctx.counters["lcil/plans_ok"] == 10 and ctx.counters["lcil/plans_rejected"] == 0
    assert demos[0].truncated[-1] and not demos[0].truncated[:-1].any()
    assert demos[0].meta["mean_return"] > 0

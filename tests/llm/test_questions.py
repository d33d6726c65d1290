"""Asking, parsing, validation with feedback, and the built-in question kinds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from guidedrl.envs import Description, EnvAdapter
from guidedrl.envs.base import BoxActions
from guidedrl.llm import Question
from guidedrl.types import Episode
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from pydantic import BaseModel

from .conftest import ScriptedModel, json_block


def corridor_episode(
    positions: list[int], actions: list[int], goal: int = 7, terminated: bool = False
) -> Episode:
    obs = np.array([[p, goal] for p in positions], dtype=np.float32)
    return Episode(obs=obs, act=np.array(actions), rew=np.zeros(len(positions)), terminated=terminated)


def test_simulated_expert_answers_legal_actions(make_client):
    client = make_client()
    assert client.suggest_action(np.array([2.0, 7.0])) == 2  # right, towards the goal
    assert client.suggest_action(np.array([9.0, 7.0])) == 0
    assert client.suggest_action(np.array([7.0, 7.0])) == 1


def test_prompt_carries_task_words_vocabulary_and_exact_state(make_client, corridor, recorder):
    model = GenericFakeChatModel(messages=iter(['{"action": 2}']), callbacks=[recorder])
    client = make_client(model)
    assert client.suggest_action(np.array([2.0, 7.0]), bad_action=0, history="t=0: stayed") == 2
    (messages,) = recorder.prompts
    human = messages[-1].text
    assert messages[0].type == "system"
    assert corridor.task in human
    assert corridor.describe(np.array([2.0, 7.0])).text in human
    assert corridor.vocabulary.prompt_text() in human
    assert "t=0: stayed" in human and "0 (left)" in human
    assert json_block(messages) == {
        "question": "action",
        "env": "Corridor-v0",
        "state": {"position": 2, "goal": 7},
        "bad_action": 0,
    }
    assert '"maximum": 2' in human  # the answer schema carries the vocabulary's range


def test_invalid_answers_are_re_asked_with_the_error_then_succeed(make_client, recorder):
    model = GenericFakeChatModel(
        messages=iter(
            ["I would go right.", '{"action": 7}', '{"action": "right", "reason": "goal is right"}']
        ),
        callbacks=[recorder],
    )
    client = make_client(model, retries=2)
    answer = client.ask(client.action_question(np.array([2.0, 7.0])))
    assert answer.ok and answer.value == 2 and answer.attempts == 3 and not answer.fallback
    first, second, third = recorder.prompts
    assert len(first) == 2 and len(second) == 4 and len(third) == 6
    assert second[2].type == "ai" and second[2].text == "I would go right."
    assert "not valid JSON" in second[3].text
    assert "out of range 0..2" in third[5].text
    s = client.summary()
    assert (s["llm_calls"], s["llm_invalid"], s["llm_fallbacks"]) == (3, 2, 0)


def test_answers_that_stay_invalid_fall_back_and_are_counted(make_client):
    model = FakeListChatModel(responses=['{"action": -1}', '{"action": 1', '{"act": 1}'])
    client = make_client(model, retries=2)
    answer = client.ask(client.action_question(np.array([2.0, 7.0])))
    assert answer.fallback and not answer.ok and answer.value is None and answer.attempts == 3
    assert "action" in answer.error  # the last error: missing field 'action'
    s = client.summary()
    assert (s["llm_calls"], s["llm_invalid"], s["llm_fallbacks"], s["llm_failures"]) == (3, 3, 1, 0)
    assert client.suggest_action(np.array([2.0, 7.0])) is None  # the convenience form: None


def test_truncated_json_is_invalid_not_completed(make_client):
    # LangChain's default JSON parser would complete '{"action": 2' into a valid answer
    client = make_client(FakeListChatModel(responses=['{"action": 2']), retries=0)
    assert client.suggest_action(np.array([2.0, 7.0])) is None
    assert client.summary()["llm_invalid"] == 1


def test_fenced_json_answers_are_accepted(make_client):
    client = make_client(FakeListChatModel(responses=['Sure:\n```json\n{"action": 0}\n```']))
    assert client.suggest_action(np.array([9.0, 7.0])) == 0


class Line1D(EnvAdapter):
    env_id = "Line-v0"
    task = "Steer to zero."

    def __init__(self) -> None:
        super().__init__()
        self._vocabulary = BoxActions([-1.0], [1.0], names=["force"])

    def describe(self, obs, info=None):
        return Description(text=f"x = {float(obs[0]):.2f}", state={"x": float(obs[0])})


def test_box_actions_are_parsed_and_out_of_bounds_rejected(make_client):
    model = FakeListChatModel(responses=['{"action": [3.0]}', '{"action": [-0.5]}'])
    client = make_client(model, adapter=Line1D(), retries=1)
    action = client.suggest_action(np.array([0.4]))
    np.testing.assert_allclose(action, [-0.5])
    assert client.summary()["llm_invalid"] == 1


def test_suggest_actions_batch_in_order(make_client):
    client = make_client(max_concurrency=4)
    obs = np.array([[p, 7.0] for p in [0, 9, 7, 3, 8]], dtype=np.float32)
    assert client.suggest_actions(obs) == [2, 0, 1, 2, 0]
    assert client.summary()["llm_calls"] == 5


def test_implicit_reward_in_range_and_validated(make_client):
    client = make_client()
    assert client.implicit_reward(np.array([2.0, 7.0]), 2) == 1.0
    assert client.implicit_reward(np.array([2.0, 7.0]), 0) == -1.0
    bad = make_client(FakeListChatModel(responses=['{"reward": 1.5}', '{"reward": -0.25}']), retries=1)
    assert bad.implicit_reward(np.array([2.0, 7.0]), 0) == -0.25


def test_critical_states_of_a_short_episode(make_client):
    client = make_client()
    # t=0 moves right towards the goal (expert), t=1 left (away), t=2 stays at it, t=3 leaves it
    episode = corridor_episode([5, 6, 7, 7], [2, 0, 1, 2])
    found = client.critical_states(episode, max_states=5)
    assert sorted(d["t"] for d in found) == [1, 3]
    assert found[0]["t"] == 1  # importance 1 away from the goal, 0.2 at it
    assert found[0]["score"] >= found[-1]["score"]
    assert all(0.0 <= d["score"] <= 1.0 and isinstance(d["reason"], str) for d in found)
    assert client.critical_states(corridor_episode([], [])) == []


def test_critical_states_of_a_long_episode_are_chunked_and_merged(make_client):
    # position = t, so a chunk's answer can name global steps; t=45 is in chunks 0 and 1
    def answer(block, messages):
        first = block["states"][0]["position"]
        items = []
        for local, state in enumerate(block["states"]):
            t = state["position"]
            if t == 45:
                items.append({"t": local, "score": 0.3 if first == 0 else 0.8, "reason": f"chunk at {first}"})
            if t == 10:
                items.append({"t": local, "score": 0.5})
            if t == 110:
                items.append({"t": local, "score": 0.9})
        return json.dumps({"critical_states": items})

    model = ScriptedModel(script=[answer])
    client = make_client(model)
    episode = corridor_episode(list(range(120)), [1] * 120, goal=500)
    found = client.critical_states(episode, max_states=5, chunk_len=50, overlap=10)
    assert model.calls == 3  # chunks start at 0, 40, 80
    assert [(d["t"], d["score"]) for d in found] == [(110, 0.9), (45, 0.8), (10, 0.5)]
    assert found[1]["reason"] == "chunk at 40"
    starts = sorted(json_block(m)["states"][0]["position"] for m in model.seen)
    assert starts == [0, 40, 80]
    assert {len(json_block(m)["states"]) for m in model.seen} == {50, 40}


def test_critical_states_rejects_steps_outside_the_chunk(make_client):
    model = FakeListChatModel(
        responses=[
            '{"critical_states": [{"t": 9, "score": 0.5}]}',
            '{"critical_states": [{"t": 2, "score": 0.5}]}',
        ]
    )
    client = make_client(model, retries=1)
    assert client.critical_states(corridor_episode([1, 2, 3], [2, 2, 2])) == [
        {"t": 2, "score": 0.5, "reason": ""}
    ]
    assert client.summary()["llm_invalid"] == 1


def test_critical_states_none_when_every_chunk_falls_back(make_client):
    client = make_client(FakeListChatModel(responses=["no idea"]), retries=0)
    assert (
        client.critical_states(
            corridor_episode(list(range(60)), [1] * 60, goal=100), chunk_len=50, overlap=10
        )
        is None
    )
    assert client.summary()["llm_fallbacks"] == 2


def test_instructions_from_the_expert_and_validated_by_the_adapter(make_client, team):
    client = make_client(adapter=team)
    plan = client.instructions({"a0": np.array([1]), "a1": np.array([3])})
    assert plan == [
        {"command": "goto", "parameter": 7, "agent": "a0"},
        {"command": "goto", "parameter": 7, "agent": "a1"},
    ]

    scripted = ScriptedModel(
        script=[
            '{"instructions": [{"command": "goto", "parameter": 7, "agent": "a9"}]}',
            '{"instructions": [{"command": "wait", "parameter": 2, "agent": "a1"}]}',
        ]
    )
    client = make_client(scripted, adapter=team)
    assert client.instructions({"a0": np.array([1]), "a1": np.array([3])}) == [
        {"command": "wait", "parameter": 2, "agent": "a1"}
    ]
    assert "unknown agent 'a9'" in scripted.seen[1][-1].text  # the adapter's reason is fed back


def test_critique_rewards_are_discretised_levels_times_k(make_client):
    client = make_client()
    episode = corridor_episode([5, 6, 5, 6], [2, 0, 2, 2])
    assert client.critique_rewards(episode, [1, 3], k=0.5) == {1: -1.0, 3: 1.0}
    assert client.critique_rewards(episode, []) == {}
    model = FakeListChatModel(
        responses=[
            '{"rewards": [{"t": 1, "level": 1}]}',
            '{"rewards": [{"t": 1, "level": 3}, {"t": 3, "level": 1}]}',
            '{"rewards": [{"t": 1, "level": -2}, {"t": 3, "level": 1}]}',
        ]
    )
    client = make_client(model, retries=2)
    assert client.critique_rewards(episode, [3, 1], k=2.0) == {1: -4.0, 3: 2.0}
    assert client.summary()["llm_invalid"] == 2
    with pytest.raises(ValueError, match="key_steps"):
        client.critique_rewards(episode, [4])


class Verdict(BaseModel):
    safe: bool


def test_custom_question_kind_with_its_own_template(make_client, corridor):
    template = "{task}\n{description}\n{vocabulary}\n```json\n{state_json}\n```\nIs this state safe?\n{format_instructions}"
    client = make_client(FakeListChatModel(responses=['{"safe": true}']))
    desc = corridor.describe(np.array([3.0, 7.0]))
    answer = client.ask(
        Question(
            kind="safety",
            payload={"state": desc.state},
            description=desc.text,
            schema=Verdict,
            validator=lambda v: v.safe,
            template=template,
        )
    )
    assert answer.ok and answer.value is True
    with pytest.raises(ValueError, match="no prompt template"):
        client.ask(Question(kind="safety", payload={}, description="", schema=Verdict))

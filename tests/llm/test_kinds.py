"""Each question-kind module on its own: questions, validation and how answers combine, asked through
a fake asker that parses scripted answers in-process (no transport, no event loop, no backend)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from guidedrl.envs import InvalidAction
from guidedrl.llm import Answer, Question, jsonable
from guidedrl.llm.kinds import action, critical_states, implicit_reward, instructions, reward_critique
from guidedrl.llm.kinds.common import fitting_chunks
from guidedrl.llm.parsing import parse_and_validate, parser_for
from guidedrl.llm.testing import CorridorAdapter, TeamCorridorAdapter
from guidedrl.types import Episode


class FakeAsker:
    """An :class:`~guidedrl.llm.kinds.common.Asker` answering each question with ``answer(question)``,
    parsed and validated the way the transport does it; ``max_steps`` makes longer trajectory
    questions "not fit" a context of ``context`` tokens."""

    def __init__(
        self,
        adapter: Any,
        answer: Callable[[Question], str],
        *,
        context: int | None = None,
        max_steps: int | None = None,
    ) -> None:
        self.adapter, self.answer, self.context, self.max_steps = adapter, answer, context, max_steps
        self.asked: list[Question] = []

    def ask(self, question: Question) -> Answer:
        return self.ask_many([question])[0]

    def ask_many(self, questions: Sequence[Question]) -> list[Answer]:
        out = []
        for q in questions:
            self.asked.append(q)
            raw = self.answer(q)
            try:
                value = parse_and_validate(parser_for(q.schema)[0], q.validator, raw)
            except Exception as exc:  # noqa: BLE001 - as the transport: any error is an invalid answer
                out.append(Answer(value=q.fallback, ok=False, fallback=True, error=str(exc), raw=raw))
            else:
                out.append(Answer(value=value, ok=True, raw=raw))
        return out

    def context_tokens(self) -> int | None:
        return self.context

    def fits(self, question: Question) -> bool:
        return self.max_steps is None or len(question.payload.get("states", [])) <= self.max_steps


def episode(n: int, goal: int = 7, terminated: bool = True) -> Episode:
    positions = [min(t, 9) for t in range(n)]
    obs = np.array([[p, goal] for p in positions], dtype=np.float32)
    return Episode(obs=obs, act=np.full(n, 2), rew=np.zeros(n), terminated=terminated)


OBS = np.array([2.0, 7.0], dtype=np.float32)


# -- action -------------------------------------------------------------------------------------
def test_action_question_shows_the_bad_action_and_rejects_it_as_an_answer():
    asker = FakeAsker(CorridorAdapter(), lambda q: '{"action": 0}')
    q = action.question(asker, OBS, bad_action=0, history="t=0: stayed")
    assert q.kind == "action" and q.payload == {"state": {"position": 2, "goal": 7}, "bad_action": 0}
    assert "0 (left)" in q.extra and "t=0: stayed" in q.extra
    with pytest.raises(ValueError, match="judged sub-optimal"):
        q.validator(q.schema(action=0))
    assert q.validator(q.schema(action="right")) == 2
    assert action.suggest(asker, OBS, bad_action=0) is None  # the scripted answer is the bad action


def test_action_schema_is_built_once_per_vocabulary_schema_and_carries_it():
    vocab = CorridorAdapter().vocabulary
    first, second = action.action_schema(vocab.json_schema()), action.action_schema(vocab.json_schema())
    assert first is second  # the parser cache keys on the class
    assert first.model_json_schema()["properties"]["action"]["maximum"] == 2


def test_suggest_many_reads_one_info_row_per_observation():
    seen = []

    class Adapter(CorridorAdapter):
        def describe(self, obs, info=None):
            seen.append(info)
            return super().describe(obs, info)

    asker = FakeAsker(Adapter(), lambda q: json.dumps({"action": 2 - q.payload["state"]["position"] % 3}))
    got = action.suggest_many(asker, np.array([[0, 7], [1, 7]]), [{"k": 0}, {"k": 1}])
    assert got == [2, 1] and seen == [{"k": 0}, {"k": 1}]


def test_a_kind_that_needs_a_vocabulary_says_how_to_give_one():
    adapter = TeamCorridorAdapter()
    adapter.vocabulary = None
    with pytest.raises(TypeError, match="DiscreteActions"):
        action.question(FakeAsker(adapter, str), {"a0": [0]})


# -- implicit_reward ----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "value"), [('{"reward": 0.5}', 0.5), ('{"reward": 1.5}', None), ("yes", None)])
def test_implicit_reward_is_a_float_in_range_or_the_fallback(raw, value):
    asker = FakeAsker(CorridorAdapter(), lambda q: raw)
    assert implicit_reward.ask(asker, OBS, 2) == value
    (q,) = asker.asked
    assert q.payload["action"] == 2 and "2 (right)" in q.extra


# -- critical_states ----------------------------------------------------------------------------
def test_critical_states_chunks_overlap_and_merge_with_the_max_score():
    def answer(q: Question) -> str:  # every chunk names its local steps 0 and 5 (score by chunk size)
        n = len(q.payload["states"])
        return json.dumps({"critical_states": [{"t": 0, "score": 0.5}, {"t": 5, "score": n / 100}]})

    asker = FakeAsker(CorridorAdapter(), answer)
    got = critical_states.ask(asker, episode(30), max_states=10, chunk_len=20, overlap=5)
    assert [len(q.payload["states"]) for q in asker.asked] == [20, 15]  # starts 0 and 15
    assert [q.payload["end"] for q in asker.asked] == ["continues", "terminated"]
    assert [(d["t"], d["score"]) for d in got] == [(0, 0.5), (15, 0.5), (5, 0.2), (20, 0.15)]


def test_critical_states_rejects_a_step_outside_the_chunk_and_is_none_when_all_fall_back():
    raw = '{"critical_states": [{"t": 12, "score": 0.9}]}'
    assert critical_states.ask(FakeAsker(CorridorAdapter(), lambda q: raw), episode(10)) is None
    with pytest.raises(ValueError, match=r"t must be in 0\.\.9"):
        critical_states.validator(10)(critical_states.CriticalStatesAnswer.model_validate_json(raw))


def test_critical_states_checks_its_arguments():
    asker = FakeAsker(CorridorAdapter(), str)
    with pytest.raises(ValueError, match="overlap < chunk_len"):
        critical_states.ask(asker, episode(5), chunk_len=5, overlap=5)
    with pytest.raises(ValueError, match="max_states"):
        critical_states.ask(asker, episode(5), max_states=0)
    assert critical_states.ask(asker, episode(0)) == [] and asker.asked == []


def test_fitting_chunks_halve_until_every_question_fits():
    asker = FakeAsker(CorridorAdapter(), str, context=1000, max_steps=12)
    steps = list(range(40))

    def build(start: int, stop: int) -> Question:
        schema = critical_states.CriticalStatesAnswer
        return Question(kind="k", payload={"states": steps[start:stop]}, description="", schema=schema)

    starts, questions = fitting_chunks(asker, 40, 40, 10, build)
    assert all(len(q.payload["states"]) <= 12 for q in questions)
    assert starts[0] == 0 and starts[-1] + len(questions[-1].payload["states"]) == 40
    unknown = FakeAsker(CorridorAdapter(), str, context=None, max_steps=1)  # unknown context: as asked
    assert fitting_chunks(unknown, 40, 40, 10, build)[0] == [0]


# -- instructions -------------------------------------------------------------------------------
def test_instructions_are_checked_by_the_adapters_validate_plan():
    team = TeamCorridorAdapter()
    good = '{"instructions": [{"command": "goto", "parameter": 7, "agent": "a0"}]}'
    bad = '{"instructions": [{"command": "fly", "parameter": 1, "agent": "a0"}]}'
    obs = {"a0": np.array([1.0]), "a1": np.array([2.0])}
    assert instructions.ask(FakeAsker(team, lambda q: good), obs, history="t=0") == [
        {"command": "goto", "parameter": 7, "agent": "a0"}
    ]
    asker = FakeAsker(team, lambda q: bad)
    assert instructions.ask(asker, obs) is None
    with pytest.raises(InvalidAction, match="unknown command 'fly'"):
        asker.asked[0].validator(instructions.InstructionsAnswer.model_validate_json(bad))


# -- reward_critique ----------------------------------------------------------------------------
def test_reward_critique_answers_exactly_the_key_steps_times_k():
    def answer(q: Question) -> str:
        return json.dumps({"rewards": [{"t": t, "level": -2 if t % 2 else 1} for t in q.payload["key_steps"]]})

    asker = FakeAsker(CorridorAdapter(), answer)
    assert reward_critique.ask(asker, episode(10), [3, 4, 3], k=0.5) == {3: -1.0, 4: 0.5}
    (q,) = asker.asked
    assert q.payload["key_steps"] == [3, 4] and q.payload["end"] == "terminated"
    missing = reward_critique.RewardCritiqueAnswer.model_validate_json('{"rewards": [{"t": 3, "level": 1}]}')
    with pytest.raises(ValueError, match=r"missing \[4\]"):
        q.validator(missing)
    with pytest.raises(ValueError, match="key_steps must index"):
        reward_critique.ask(asker, episode(10), [10])
    assert reward_critique.ask(asker, episode(10), []) == {}


def test_reward_critique_asks_only_chunks_holding_key_steps_and_needs_them_all():
    def answer(q: Question) -> str:
        return json.dumps({"rewards": [{"t": t, "level": 2} for t in q.payload["key_steps"]]})

    asker = FakeAsker(CorridorAdapter(), answer, context=1000, max_steps=8)
    assert reward_critique.ask(asker, episode(30), [1, 2, 25]) == {1: 2.0, 2: 2.0, 25: 2.0}
    assert all(len(q.payload["states"]) <= 8 for q in asker.asked) and len(asker.asked) == 2
    fails = FakeAsker(CorridorAdapter(), lambda q: "no", context=1000, max_steps=8)
    assert reward_critique.ask(fails, episode(30), [1, 25]) is None


# -- jsonable -----------------------------------------------------------------------------------
def test_jsonable_turns_numpy_into_plain_json_and_refuses_the_rest():
    data = {"a": np.arange(3, dtype=np.int64), "x": np.float32(0.5), "b": np.bool_(True)}
    assert json.loads(json.dumps(data, default=jsonable)) == {"a": [0, 1, 2], "x": 0.5, "b": True}
    with pytest.raises(TypeError, match="not JSON-serialisable: object"):
        json.dumps({"o": object()}, default=jsonable)

"""The simulated backend: expert answers, configurable corruption, determinism, latency, errors."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from guidedrl import registry
from guidedrl.config import LLMConfig
from guidedrl.errors import ConfigError
from guidedrl.llm import LLMClient
from guidedrl.llm.testing import CorridorAdapter
from guidedrl_llm_simulated import SimulatedChatModel, make_simulated
from guidedrl_llm_simulated.model import find_block
from langchain_core.messages import HumanMessage

ADAPTER = CorridorAdapter(length=1000, goal=500)
POSITIONS = np.array([[p, 500.0] for p in range(0, 1000, 3) if p != 500], dtype=np.float32)


def client(tmp_path=None, **options) -> LLMClient:
    config = LLMConfig(backend="simulated", options=options, cache="off", retries=0)
    return LLMClient.from_config(config, adapter=ADAPTER, run_dir=tmp_path)


def expert_actions() -> list[int]:
    return [2 if p < 500 else 0 for p, _ in POSITIONS]


def test_registered_through_the_entry_point():
    entry = registry.LLMS.get("simulated")
    assert entry is not None and entry.factory is make_simulated


def test_needs_an_expert_and_says_how_to_fix_it():
    with pytest.raises(ConfigError, match="has none.*`expert`.*openai"):
        make_simulated(adapter=CorridorAdapter(with_expert=False))
    with pytest.raises(ConfigError, match="has none"):
        make_simulated(adapter=None)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="Did you mean 'error_rate'"):
        make_simulated(adapter=ADAPTER, eror_rate=0.1)
    with pytest.raises(ConfigError, match="error_rate"):
        make_simulated(adapter=ADAPTER, error_rate=1.5)
    with pytest.raises(ConfigError, match="takes no model name"):
        make_simulated(adapter=ADAPTER, model="gpt")


def test_perfect_by_default():
    with client() as c:
        assert c.suggest_actions(POSITIONS) == expert_actions()
        assert c.summary()["llm_invalid"] == 0


def test_error_rate_gives_valid_but_wrong_answers():
    with client(error_rate=0.4, seed=1) as c:
        answers = c.suggest_actions(POSITIONS)
        assert None not in answers and c.summary()["llm_invalid"] == 0
    wrong = np.mean([a != e for a, e in zip(answers, expert_actions(), strict=True)])
    # a random legal action is wrong 2/3 of the time: 0.4 * 2/3 ≈ 0.27
    assert 0.15 < wrong < 0.4


def test_invalid_rate_gives_answers_the_layer_rejects():
    with client(invalid_rate=0.5, seed=2) as c:
        answers = c.suggest_actions(POSITIONS)
        s = c.summary()
    fallbacks = answers.count(None)
    assert s["llm_invalid"] == s["llm_fallbacks"] == fallbacks
    assert 0.35 < fallbacks / len(answers) < 0.65
    assert all(a == e for a, e in zip(answers, expert_actions(), strict=True) if a is not None)


def test_invalid_answers_are_malformed_or_out_of_range(tmp_path):
    config = LLMConfig(backend="simulated", options={"invalid_rate": 1.0}, cache="off", retries=0, log="full")
    with LLMClient.from_config(config, adapter=ADAPTER, run_dir=tmp_path) as c:
        c.suggest_actions(POSITIONS[:60])
    errors = [json.loads(line)["error"] for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]
    assert any("not valid JSON" in e for e in errors)
    assert any("out of range" in e for e in errors)


def test_deterministic_given_seed_and_prompt():
    with (
        client(error_rate=0.5, invalid_rate=0.2, seed=7) as a,
        client(error_rate=0.5, invalid_rate=0.2, seed=7) as b,
    ):
        forward = a.suggest_actions(POSITIONS)
        backward = b.suggest_actions(POSITIONS[::-1])[::-1]
    assert forward == backward
    with client(error_rate=0.5, invalid_rate=0.2, seed=8) as other:
        assert other.suggest_actions(POSITIONS) != forward


def test_latency_is_real():
    model = make_simulated(adapter=ADAPTER, latency_ms=100)
    message = [
        HumanMessage(
            content='```json\n{"question": "action", "env": "Corridor-v0", "state": {"position": 1, "goal": 500}}\n```'
        )
    ]
    started = time.perf_counter()
    assert json.loads(model.invoke(message).text)["action"] == 2
    assert time.perf_counter() - started >= 0.1
    started = time.perf_counter()
    asyncio.run(model.ainvoke(message))
    assert time.perf_counter() - started >= 0.1


def test_reads_the_state_block_not_other_fences():
    text = (
        'Exact state:\n```json\n{"question": "action", "env": "x", "state": {"position": 3, "goal": 5}}\n```\n'
        'Schema:\n```\n{"properties": {}}\n```\n```json\n{"not": "a question"}\n```'
    )
    assert find_block([HumanMessage(content=text)])["state"] == {"position": 3, "goal": 5}
    with pytest.raises(ValueError, match="state_json"):
        find_block([HumanMessage(content="no block")])


def test_reports_token_usage():
    with client() as c:
        c.suggest_action(POSITIONS[0])
        assert c.summary()["llm_tokens"] > 50


def test_unknown_question_kind_is_a_failure_not_a_crash(tmp_path):
    from guidedrl.llm import Question
    from pydantic import BaseModel

    class Anything(BaseModel):
        x: int

    template = "{task}{description}{vocabulary}\n```json\n{state_json}\n```\n{format_instructions}"
    with client(tmp_path) as c:
        answer = c.ask(Question(kind="poem", payload={}, description="", schema=Anything, template=template))
        assert answer.fallback and "cannot answer question kind 'poem'" in answer.error
        assert c.summary()["llm_failures"] == 1


def test_is_a_simulated_chat_model_labelled_simulated():
    model = make_simulated(adapter=ADAPTER)
    assert isinstance(model, SimulatedChatModel) and model.model_name == "simulated"
    assert "latency" not in model._get_llm_string()  # latency does not change answers or cache keys

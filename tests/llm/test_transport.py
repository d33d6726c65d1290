"""The transport on its own: hand-made messages and schema, no adapter, no prompt templates, no
question kind. Cache, re-asks, transient retries, budgets, context fitting and the log."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from guidedrl.config import LLMConfig
from guidedrl.llm import Question, Transport, summarize_log
from guidedrl.llm.budget import Budget
from guidedrl.llm.context_window import ContextWindow, estimate_tokens
from guidedrl.llm.parsing import parser_for
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from .conftest import ScriptedModel


class Number(BaseModel):
    n: int = Field(ge=0, le=9)


def question(text: str = "pick a digit", **kw) -> tuple[Question, list]:
    q = Question(kind="digit", payload={}, description="", schema=Number, validator=lambda a: a.n, **kw)
    return q, [SystemMessage(content="Answer JSON."), HumanMessage(content=text)]


@pytest.fixture
def transport(tmp_path: Path):
    made: list[Transport] = []

    def make(script: list, **cfg) -> Transport:
        cfg.setdefault("cache", "off")
        cfg.setdefault("backoff_s", 0.01)
        cfg.setdefault("cache_path", str(tmp_path / "cache.sqlite"))
        t = Transport(ScriptedModel(script=script), config=LLMConfig(**cfg), run_dir=tmp_path / "run", label="t")
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def ask(t: Transport, text: str = "pick a digit", **kw):
    q, messages = question(text, **kw)
    parser, _, schema = parser_for(Number)
    return t.ask_many([t.prepare(q, messages, parser, schema)])[0]


def log_lines(t: Transport) -> list[dict]:
    return [json.loads(line) for line in t.log.path.read_text().splitlines()]


def test_a_valid_answer_is_cached_and_the_next_ask_costs_no_call(transport):
    t = transport(['{"n": 4}'], cache="readwrite")
    first, second = ask(t), ask(t)
    assert (first.value, first.ok, first.cached, first.attempts) == (4, True, False, 1)
    assert (second.value, second.cached) == (4, True) and t.model.calls == 1
    assert [line["event"] for line in log_lines(t)] == ["call", "cache_hit"]
    assert ask(t, "another prompt").cached is False  # the key is the prompt


def test_an_invalid_answer_is_re_asked_with_its_error_then_falls_back(transport):
    t = transport(['{"n": 12}', "no idea", '{"n": 3}'], retries=1)
    answer = ask(t, fallback=-1)
    assert (answer.value, answer.ok, answer.fallback, answer.attempts) == (-1, False, True, 2)
    assert "That answer cannot be used" in t.model.seen[1][-1].text and "12" in t.model.seen[1][-1].text
    counts = summarize_log(t.log.path)
    assert counts["llm_invalid"] == 2 and counts["llm_fallbacks"] == 1 and counts["llm_calls"] == 2


def test_transient_errors_are_retried_and_other_errors_are_not(transport):
    t = transport([TimeoutError("slow"), ConnectionError("reset"), '{"n": 1}'], transient_retries=2)
    answer = ask(t)
    assert answer.value == 1 and answer.attempts == 3
    assert [line["failed"] for line in log_lines(t)] == [False, False, False]
    t = transport([PermissionError("401 no key"), '{"n": 1}'], transient_retries=2)
    answer = ask(t)
    assert answer.fallback and answer.attempts == 1 and "PermissionError: 401" in answer.error


def test_a_spent_budget_skips_questions_without_calling(transport):
    t = transport(['{"n": 2}'], max_calls=1)
    assert ask(t).value == 2
    answer = ask(t, "second")
    assert answer.fallback and answer.error == "budget exhausted: max_calls" and t.model.calls == 1
    assert t.budget.exhausted == {"reason": "max_calls", "limit": 1, "at_call": 1}


def test_a_prompt_longer_than_the_context_is_not_sent(transport):
    t = transport(['{"n": 2}'], context_tokens=64)
    answer = ask(t, "digits " + "7" * 200)
    assert answer.fallback and answer.error.startswith("prompt too long") and t.model.calls == 0
    assert ask(t).value == 2


def test_a_new_model_is_the_one_asked_and_measured(transport):
    t = transport([ConnectionError("down")], transient_retries=0)
    t.model = ScriptedModel(script=['{"n": 5}'])
    assert ask(t).value == 5 and t.context.model is t.model


def test_the_transport_refuses_its_own_loop_thread_and_a_closed_transport(transport):
    t = transport(['{"n": 5}'])
    q, messages = question()
    p = t.prepare(q, messages, *[parser_for(Number)[i] for i in (0, 2)])
    with pytest.raises(RuntimeError, match="own event loop"):
        t._loop.run(_call_on_loop(t, p))
    t.close()
    with pytest.raises(RuntimeError, match="closed"):
        t.ask_many([p])


async def _call_on_loop(t: Transport, p) -> None:
    t.ask_many([p])


# -- Budget and ContextWindow -------------------------------------------------------------------
def test_budget_counts_overlapping_waits_once_and_cuts_the_last_timeout():
    budget = Budget(LLMConfig(max_wall_s=10.0, timeout_s=30.0), tokens=lambda: 0)
    barrier = threading.Barrier(3)

    def wait() -> None:
        budget.start_waiting()
        barrier.wait()
        time.sleep(0.2)
        budget.stop_waiting()

    threads = [threading.Thread(target=wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0.19 <= budget.wall_s() < 0.5  # three overlapping waits of 0.2 s
    timeout, cut = budget.call_timeout()
    assert cut and timeout == pytest.approx(10.0 - budget.wall_s(), abs=0.05)
    assert budget.check() is None
    budget.spend("max_wall_s", 10.0)
    budget.spend("max_calls", 1)  # the first reason stays
    assert budget.check()["reason"] == "max_wall_s"


def test_budget_tokens_come_from_the_counter_it_is_given():
    used = [0]
    budget = Budget(LLMConfig(max_tokens=100), tokens=lambda: used[0])
    assert budget.check() is None
    used[0] = 100
    assert budget.check() == {"reason": "max_tokens", "limit": 100, "at_call": 0}


def test_context_window_learns_a_smaller_context_from_an_error_and_keeps_room_for_the_answer():
    class Model:
        max_tokens = 100

        def context_window(self) -> int:
            return 4096

    window = ContextWindow(Model(), None, "m")
    assert window.tokens() == 4096
    window.learn("400: this model's maximum context length is 1024 tokens")
    window.learn("the context window of 2048")  # a larger one is not learnt
    assert window.tokens() == 1024
    messages = [HumanMessage(content="x" * 2600)]
    assert estimate_tokens(messages) == 875  # 3 characters a token, 8 per message
    assert window.too_long(messages) is None  # 875 + 100 <= 1024
    assert "about 1208 tokens" in window.too_long([HumanMessage(content="x" * 3600)])

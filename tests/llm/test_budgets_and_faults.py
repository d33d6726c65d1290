"""Budgets, timeouts, transient errors, concurrency, and use from threads and event loops."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from guidedrl.llm import is_transient

from .conftest import ScriptedModel

OK = '{"action": 2}'


def obs(p: float) -> np.ndarray:
    return np.array([p, 700.0], dtype=np.float32)


@pytest.fixture
def far_goal():
    from guidedrl.llm.testing import CorridorAdapter

    return CorridorAdapter(length=1000, goal=700)


def test_max_calls_stops_guidance_and_says_when(make_client, far_goal):
    client = make_client(adapter=far_goal, max_calls=3)
    answers = [client.suggest_action(obs(p)) for p in range(5)]
    assert answers == [2, 2, 2, None, None]
    assert client.exhausted
    s = client.summary()
    assert s["llm_calls"] == 3 and s["llm_fallbacks"] == 2
    assert s["llm_budget_exhausted"] == {"reason": "max_calls", "limit": 3, "at_call": 3}


def test_max_calls_is_exact_under_concurrency(make_client, far_goal):
    model = ScriptedModel(script=[OK], delay_s=0.05)
    client = make_client(model, adapter=far_goal, max_calls=4, max_concurrency=8)
    answers = client.suggest_actions(np.stack([obs(p) for p in range(12)]))
    assert model.calls == 4 and answers.count(2) == 4 and answers.count(None) == 8


def test_max_tokens(make_client, far_goal):
    client = make_client(adapter=far_goal, max_tokens=10)  # the simulated backend reports usage
    assert client.suggest_action(obs(1)) == 2
    assert client.suggest_action(obs(2)) is None
    s = client.summary()
    assert s["llm_tokens"] > 10 and s["llm_budget_exhausted"]["reason"] == "max_tokens"


def test_max_wall_s_and_spent_budget_answers_at_once(make_client, far_goal):
    model = ScriptedModel(script=[OK], delay_s=0.3)
    client = make_client(model, adapter=far_goal, max_wall_s=0.5)
    results = [client.suggest_action(obs(p)) for p in range(4)]
    assert results[0] == 2 and results[-1] is None
    assert client.summary()["llm_budget_exhausted"]["reason"] == "max_wall_s"
    started = time.perf_counter()
    assert client.suggest_actions(np.stack([obs(p) for p in range(10, 30)])) == [None] * 20
    assert time.perf_counter() - started < 1.0
    assert model.calls <= 3


def test_cache_hits_do_not_count_against_max_calls(make_client, far_goal):
    client = make_client(adapter=far_goal, max_calls=1, cache="readwrite")
    assert client.suggest_action(obs(1)) == 2
    assert client.exhausted  # the one call is spent: further questions fall back, cached or not
    assert client.suggest_action(obs(1)) is None


def test_timeouts_are_retried_then_fall_back(make_client):
    model = ScriptedModel(script=[OK], delay_s=10.0)
    client = make_client(model, timeout_s=0.2, transient_retries=1)
    started = time.perf_counter()
    answer = client.ask(client.action_question(obs(1)))
    assert time.perf_counter() - started < 3.0
    assert answer.fallback and "timeout" in answer.error.lower() and answer.attempts == 2
    s = client.summary()
    assert (s["llm_calls"], s["llm_failures"], s["llm_fallbacks"]) == (2, 1, 1)


def test_a_hanging_synchronous_backend_never_blocks_training(make_client):
    model = ScriptedModel(script=[OK], delay_s=5.0, blocking=True)
    client = make_client(model, timeout_s=0.2, transient_retries=0)
    started = time.perf_counter()
    assert client.suggest_action(obs(1)) is None
    assert time.perf_counter() - started < 2.0


def test_transient_errors_are_retried_with_backoff(make_client):
    model = ScriptedModel(script=[ConnectionError("connection reset"), TimeoutError(), OK])
    client = make_client(model, transient_retries=3, backoff_s=0.05)
    started = time.perf_counter()
    answer = client.ask(client.action_question(obs(1)))
    assert answer.ok and answer.value == 2 and answer.attempts == 3
    assert time.perf_counter() - started >= 0.05 + 0.1  # waits 0.05, then 0.1 (+ jitter)
    s = client.summary()
    assert (s["llm_calls"], s["llm_failures"], s["llm_fallbacks"]) == (3, 0, 0)


def test_other_errors_fail_at_once(make_client):
    model = ScriptedModel(script=[RuntimeError("401: invalid API key"), OK])
    client = make_client(model, transient_retries=3)
    answer = client.ask(client.action_question(obs(1)))
    assert answer.fallback and "401" in answer.error and model.calls == 1
    assert client.summary()["llm_failures"] == 1


class StatusError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (TimeoutError(), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (StatusError(429), True),
        (StatusError(503), True),
        (StatusError(400), False),
        (StatusError(401), False),
        (ValueError("bad"), False),
    ],
)
def test_transient_classification(exc, transient):
    assert is_transient(exc) is transient


def test_batched_questions_run_concurrently_up_to_the_limit(make_client, far_goal):
    model = ScriptedModel(script=[OK], delay_s=0.3)
    client = make_client(model, adapter=far_goal, max_concurrency=8)
    assert client.suggest_actions(np.stack([obs(p) for p in range(16)])) == [2] * 16
    assert model.max_in_flight == 8


def test_usable_from_several_threads_repeatedly(make_client, far_goal):
    client = make_client(adapter=far_goal, options={"latency_ms": 5})
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for p in range(offset, offset + 10):
                assert client.suggest_action(obs(p)) == 2
                assert client.suggest_actions(np.stack([obs(p), obs(999)])) == [2, 0]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(100 * i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert client.summary()["llm_calls"] == 4 * 10 * 3


def test_usable_from_code_that_runs_an_event_loop(make_client):
    client = make_client()

    async def training_step() -> object:
        return client.suggest_action(obs(1))

    assert asyncio.run(training_step()) == 2


def test_closed_client_refuses_questions(make_client):
    client = make_client()
    client.close()
    client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.suggest_action(obs(1))


def test_closing_while_a_question_waits_does_not_hang(make_client):
    model = ScriptedModel(script=[OK], delay_s=30.0)
    client = make_client(model, timeout_s=60)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_catch(client.suggest_action, obs(1))))
    thread.start()
    time.sleep(0.3)
    client.close()
    thread.join(timeout=5)
    assert not thread.is_alive() and outcome and isinstance(outcome[0], BaseException)


def _catch(fn, *args):
    try:
        return fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        return exc

"""The hostile answers and slow servers the reliability issue measured, one test each; the decisions
(bad-case answers, action names, long reasons) and fitting prompts into a model's context."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import numpy as np
import pytest
from guidedrl.llm import summarize_log
from guidedrl.llm.safety import MAX_DEPTH, clean_text, load_answer_json, redact
from guidedrl.types import Episode

from .conftest import ScriptedModel

OBS = np.array([3.0, 7.0], dtype=np.float32)  # right (2) is the expert's action


def log_lines(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "run" / "llm_calls.jsonl").read_text("utf-8").splitlines()]


def assert_summary_matches_log(client, tmp_path) -> None:
    recomputed = summarize_log(tmp_path / "run" / "llm_calls.jsonl")
    assert {k: client.summary()[k] for k in recomputed} == recomputed


def test_deep_nesting_is_an_invalid_answer_not_a_recursion_error(make_client, tmp_path):
    model = ScriptedModel(script=["[" * 5000, '{"action": ' + "[" * 50_000 + "2"])
    client = make_client(model, retries=1, log="full")
    answer = client.ask(client.action_question(OBS))
    assert answer.fallback and "nested too deeply" in answer.error
    assert [line["valid"] for line in log_lines(tmp_path)] == [False, False]
    assert "nested too deeply" in log_lines(tmp_path)[0]["error"]
    assert_summary_matches_log(client, tmp_path)


def test_lone_surrogates_raw_or_escaped_never_break_the_log_or_the_reask(make_client, tmp_path):
    escaped = '{"action": 2, "reason": "\\ud800 ok"}'  # plain ASCII, a lone surrogate once parsed
    raw = 'no JSON \ud800 here'  # a raw lone surrogate in the response text
    model = ScriptedModel(script=[raw, escaped])
    client = make_client(model, retries=1, log="full", cache="readwrite")
    answer = client.ask(client.action_question(OBS))
    assert answer.ok and answer.value == 2 and answer.attempts == 2
    lines = log_lines(tmp_path)  # read as strict UTF-8
    assert [line["valid"] for line in lines] == [False, True]
    assert "\ufffd" in lines[0]["answer"] and lines[1]["answer"] == escaped
    assert model.seen[1][-2].content == "no JSON \ufffd here"  # the re-ask carries the cleaned text
    assert_summary_matches_log(client, tmp_path)
    assert client.suggest_action(OBS) == 2  # the answer was cached and reads back


def test_parsed_strings_are_surrogate_free():
    obj = load_answer_json('{"a\\udfff": ["\\ud83d\\ude00", "\\ud800"]}')
    assert obj == {"a\ufffd": ["\U0001f600", "\ufffd"]}
    assert clean_text("x\ud800") == "x\ufffd" and type(clean_text(type("S", (str,), {})("y"))) is str


def test_nesting_limit_counts_brackets_outside_strings_only():
    assert load_answer_json(json.dumps({"reason": "[" * 1000})) == {"reason": "[" * 1000}
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert load_answer_json(nested) is not None


@pytest.mark.parametrize("text", ['{"reward": NaN}', '{"reward": Infinity}', '{"reward": 1e999}'])
def test_nan_and_infinity_are_invalid(make_client, text):
    client = make_client(ScriptedModel(script=[text]), retries=0)
    assert client.implicit_reward(OBS, 2) is None
    assert client.summary()["llm_invalid"] == 1


def test_an_answer_equal_to_the_bad_action_is_invalid_and_reasked(make_client):
    model = ScriptedModel(script=['{"action": 0, "reason": "left"}', '{"action": 2}'])
    client = make_client(model, retries=1)
    assert client.suggest_action(OBS, bad_action=0) == 2
    feedback = model.seen[1][-1].content
    assert "0 (left) is the action judged sub-optimal" in feedback
    assert client.summary()["llm_invalid"] == 1


def test_an_action_name_is_accepted_an_integer_string_too(make_client):
    """Decision: the prompt asks for the integer, but a name from the vocabulary is unambiguous, so it
    is taken (case and spaces ignored); anything else is invalid, never guessed."""
    client = make_client(ScriptedModel(script=['{"action": " Right "}']), retries=0)
    assert client.suggest_action(OBS) == 2
    client = make_client(ScriptedModel(script=['{"action": "push_left"}']), retries=0)
    assert client.suggest_action(OBS) is None


def test_an_over_long_reason_is_cut_not_rejected(make_client):
    """Decision: the reason is commentary; a valid action is not thrown away for a long one."""
    long = "because " * 100
    client = make_client(ScriptedModel(script=[json.dumps({"reward": 0.5, "reason": long})]), retries=0)
    assert client.implicit_reward(OBS, 2) == 0.5
    model = ScriptedModel(script=[json.dumps({"critical_states": [{"t": 1, "score": 0.5, "reason": long}]})])
    episode = Episode(obs=np.array([[p, 7] for p in range(3)], dtype=np.float32), act=np.ones(3), rew=np.zeros(3))
    [found] = make_client(model, retries=0).critical_states(episode)
    assert len(found["reason"]) == 200 and found["reason"].endswith("\u2026")


def test_a_validator_bug_is_an_invalid_answer_named_by_its_type(make_client, team):
    class Broken(type(team)):
        def validate_plan(self, plan):
            raise OverflowError("boom")

    client = make_client(
        ScriptedModel(script=['{"instructions": [{"command": "goto", "parameter": 1, "agent": "a0"}]}']),
        adapter=Broken(),
        retries=0,
    )
    assert client.instructions({"a0": np.array([1.0]), "a1": np.array([2.0])}) is None
    assert "OverflowError: boom" in client.summary()["llm_first_error"]
    assert client.summary()["llm_invalid"] == 1


def test_garbage_token_counts_count_as_unreported(make_client):
    from langchain_core.messages import AIMessage

    class Weird(ScriptedModel):
        def _next(self, messages):
            result = super()._next(messages)
            result.generations[0].message = AIMessage.model_construct(
                content='{"action": 2}', response_metadata={"token_usage": {"total_tokens": float("nan")}}
            )
            return result

    client = make_client(Weird(script=["x"]), retries=0)
    assert client.suggest_action(OBS) == 2
    assert client.summary()["llm_tokens"] == 0


# -- the console and the budget ----------------------------------------------------------------
def test_the_first_failures_are_named_on_the_console(make_client, caplog):
    client = make_client(ScriptedModel(script=[ValueError("context window of 2048 exceeded")]), retries=0)
    with caplog.at_level(logging.WARNING, logger="guidedrl.llm"):
        for p in range(5):
            client.suggest_action(np.array([p, 7.0], dtype=np.float32))
    lines = [r.getMessage() for r in caplog.records if "call failed" in r.getMessage()]
    assert len(lines) == 3 and "context window of 2048 exceeded" in lines[0]
    assert "later ones are only counted" in lines[-1]
    assert client.summary()["llm_first_error"] == "context window of 2048 exceeded"


def test_a_call_cut_by_max_wall_s_is_a_budget_stop_not_a_timeout(make_client, tmp_path):
    client = make_client(ScriptedModel(script=['{"action": 2}'], delay_s=2.0), max_wall_s=0.3, timeout_s=30)
    assert client.suggest_action(OBS) is None
    [line] = log_lines(tmp_path)
    assert line["error"].startswith("budget exhausted: max_wall_s") and line["failed"] is False
    s = client.summary()
    assert s["llm_budget_exhausted"]["reason"] == "max_wall_s" and s["llm_failures"] == 0
    assert s["llm_fallbacks"] == 1
    assert_summary_matches_log(client, tmp_path)


def test_timeouts_hold_back_the_next_questions_no_retry_storm(make_client):
    """Questions asked one after another of a server that times out: each waits a hold-back that
    doubles per timeout in a row (0.1, 0.2, 0.4 s) instead of hitting the server at once; an answer
    resets it."""
    slow = ScriptedModel(script=['{"action": 2}'], delay_s=5.0)
    client = make_client(slow, timeout_s=0.1, transient_retries=0, backoff_s=0.1)
    started = time.perf_counter()
    assert [client.suggest_action(np.array([p, 7.0], dtype=np.float32)) for p in range(4)] == [None] * 4
    assert time.perf_counter() - started >= 0.4 + 0.1 + 0.2 + 0.4
    assert client.summary()["llm_failures"] == 4
    client.model = ScriptedModel(script=['{"action": 2}'])  # the server recovers
    time.sleep(0.8)
    assert client.suggest_action(OBS) == 2
    started = time.perf_counter()
    assert client.suggest_action(np.array([4.0, 7.0], dtype=np.float32)) == 2
    assert time.perf_counter() - started < 0.1  # no hold-back after an answer


def test_a_timed_out_call_is_cancelled(make_client):
    cancelled = []

    class Slow(ScriptedModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise
            return self._next(messages)

    client = make_client(Slow(script=['{"action": 2}']), timeout_s=0.2, transient_retries=0)
    assert client.suggest_action(OBS) is None
    assert cancelled == [True]


# -- prompts that fit the context --------------------------------------------------------------
def test_a_prompt_that_cannot_fit_is_not_sent_and_says_why(make_client, tmp_path, caplog):
    model = ScriptedModel(script=['{"action": 2}'])
    client = make_client(model, context_tokens=200)
    with caplog.at_level(logging.WARNING, logger="guidedrl.llm"):
        answer = client.ask(client.action_question(OBS))
    assert answer.fallback and model.calls == 0
    assert "prompt too long" in answer.error and "llm.context_tokens" in answer.error
    assert any("prompt too long" in r.getMessage() for r in caplog.records)
    [line] = log_lines(tmp_path)
    assert line["event"] == "skipped" and line["fallback"] is True


def test_trajectories_are_chunked_to_fit_the_context(make_client):
    from guidedrl.llm.context_window import estimate_tokens

    def answer(block, messages):
        return json.dumps({"critical_states": [{"t": 0, "score": 0.5}]})

    model = ScriptedModel(script=[answer])
    length = 60
    episode = Episode(
        obs=np.array([[p, 500] for p in range(length)], dtype=np.float32), act=np.ones(length), rew=np.zeros(length)
    )
    client = make_client(model, context_tokens=3000)
    found = client.critical_states(episode, chunk_len=50, overlap=10)
    assert model.calls > 2  # 50-step chunks did not fit: they were halved
    assert max(estimate_tokens(m) for m in model.seen) + 512 <= 3000
    assert found and all(0 <= d["t"] < length for d in found)


def test_reward_critique_is_chunked_around_key_steps_when_the_episode_does_not_fit(make_client):
    def answer(block, messages):
        return json.dumps({"rewards": [{"t": t, "level": 1} for t in block["key_steps"]]})

    model = ScriptedModel(script=[answer])
    length = 80
    episode = Episode(
        obs=np.array([[p, 500] for p in range(length)], dtype=np.float32), act=np.ones(length), rew=np.zeros(length)
    )
    client = make_client(model, context_tokens=3000)
    assert client.critique_rewards(episode, [3, 40, 77], k=2.0) == {3: 2.0, 40: 2.0, 77: 2.0}
    assert model.calls >= 2


def test_the_context_is_learnt_from_a_server_error(make_client):
    model = ScriptedModel(
        script=[ValueError("Requested tokens (5000) exceed context window of 2048"), '{"action": 2}']
    )
    client = make_client(model, retries=0, transient_retries=0)
    assert client.context_tokens() is None
    assert client.suggest_action(OBS) is None
    assert client.context_tokens() == 2048


# -- secrets -------------------------------------------------------------------------------------
def test_error_texts_are_redacted():
    text = (
        'Error 401: {"headers": {"Authorization": "Bearer sk-abc123456789xyz", "api-key": "k-secret-1"}} '
        "authorization=Basic dXNlcjpwYXNz key sk-proj-ABCDEFGH12345 mine: hunter2hunter2"
    )
    out = redact(text, ["hunter2hunter2"])
    for secret in ("sk-abc123456789xyz", "k-secret-1", "dXNlcjpwYXNz", "sk-proj-ABCDEFGH12345", "hunter2hunter2"):
        assert secret not in out
    assert out.count("[redacted]") >= 5

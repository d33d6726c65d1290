"""The call log (and that the summary matches it), templates, and building clients from config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from guidedrl import registry
from guidedrl.config import LLMConfig
from guidedrl.errors import ConfigError, PluginError
from guidedrl.llm import DEFAULT_TEMPLATES, KINDS, LOG_NAME, LLMClient, summarize_log
from guidedrl.llm.testing import CorridorAdapter
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel

from .conftest import ScriptedModel

SUMMED = ("llm_calls", "llm_cache_hits", "llm_failures", "llm_invalid", "llm_fallbacks", "llm_tokens")


def read_log(client: LLMClient) -> list[dict]:
    return [json.loads(line) for line in client.log.path.read_text().splitlines()]


def test_summary_matches_the_log(make_client, tmp_path):
    adapter = CorridorAdapter(length=1000, goal=700)

    def answer(block, messages):
        p = block["state"]["position"]
        if p == 3 and len(messages) == 2:
            return "no JSON here"  # invalid once, then fine
        if p == 4:
            return '{"action": 99}'  # always invalid: falls back
        if p == 5:
            raise ConnectionError("reset")  # transient, fails after retries
        return '{"action": 2}'

    model = ScriptedModel(script=[answer])
    client = make_client(
        model, adapter=adapter, cache="readwrite", retries=1, transient_retries=1, max_calls=12
    )
    # calls: 1, 1, 2 (invalid, valid), 2 (invalid twice), 2 (reset twice), hits for 1 and 2, then
    # 6..9 spend the last 4 of 12 calls and 10 is skipped
    obs = [np.array([p, 700.0]) for p in (1, 2, 3, 4, 5, 1, 2, 6, 7, 8, 9, 10)]
    values = [client.suggest_action(o) for o in obs]
    assert values == [2, 2, 2, None, None, 2, 2, 2, 2, 2, 2, None]
    summary = client.summary()
    counts = summarize_log(client.log.path)
    assert {k: summary[k] for k in SUMMED} == counts
    assert counts["llm_cache_hits"] == 2 and counts["llm_invalid"] == 3 and counts["llm_failures"] == 1
    assert summary["llm_budget_exhausted"] == {"reason": "max_calls", "limit": 12, "at_call": 12}
    assert counts["llm_fallbacks"] == 3
    events = {line["event"] for line in read_log(client)}
    assert events == {"call", "cache_hit", "skipped"}
    assert summary["llm_calls"] == 12


def test_log_lines_and_their_fields(make_client):
    client = make_client(FakeListChatModel(responses=["oops", '{"action": 2}']), retries=1)
    client.suggest_action(np.array([2.0, 7.0]))
    # written and flushed while the client is still open
    first, second = read_log(client)
    assert first["event"] == "call" and first["valid"] is False and "not valid JSON" in first["error"]
    assert second["valid"] is True and second["attempt"] == 2 and second["q"] == first["q"] == 1
    assert first["prompt_sha256"] == second["prompt_sha256"] and len(first["prompt_sha256"]) == 64
    for line in (first, second):
        assert line["kind"] == "action" and line["backend"] == "simulated" and line["cache_hit"] is False
        assert isinstance(line["latency_s"], float) and "prompt" not in line and "answer" not in line


def test_full_log_has_prompts_and_raw_answers(make_client):
    client = make_client(FakeListChatModel(responses=['{"action": 2}']), log="full")
    client.suggest_action(np.array([2.0, 7.0]))
    (line,) = read_log(client)
    assert line["answer"] == '{"action": 2}'
    assert [m["role"] for m in line["prompt"]] == ["system", "human"]
    assert "Exact state" in line["prompt"][1]["content"]


def test_no_run_dir_no_log(make_client):
    client = make_client(run_dir=None)
    assert client.suggest_action(np.array([2.0, 7.0])) == 2
    assert client.log.path is None and client.summary()["llm_calls"] == 1


def test_every_default_template_has_the_required_variables():
    from guidedrl.llm.prompts import check_template

    assert set(KINDS) | {"system"} == set(DEFAULT_TEMPLATES)
    for kind in KINDS:
        check_template(kind, DEFAULT_TEMPLATES[kind])


def test_templates_per_env_per_client_and_per_question(make_client, recorder):
    adapter = CorridorAdapter()
    adapter.prompt_templates = {
        "action": "ENV WORDING {task} {description} {vocabulary}\n```json\n{state_json}\n```\n{extra}{format_instructions}",
    }
    model = GenericFakeChatModel(messages=iter(['{"action": 2}'] * 3), callbacks=[recorder])
    client = make_client(model, adapter=adapter)
    client.suggest_action(np.array([2.0, 7.0]))
    assert recorder.prompts[-1][-1].text.startswith("ENV WORDING")
    client.templates["system"] = "You are terse."
    method_wording = (
        "METHOD WORDING {task} {description} {vocabulary}\n```json\n{state_json}\n```\n{format_instructions}"
    )
    client.suggest_action(np.array([3.0, 7.0]), template=method_wording)
    assert recorder.prompts[-1][-1].text.startswith("METHOD WORDING")
    assert recorder.prompts[-1][0].text == "You are terse."


def test_bad_templates_are_refused_with_the_fix(make_client):
    adapter = CorridorAdapter()
    adapter.prompt_templates = {"action": "{task} {description} {vocabulary} {format_instructions}"}
    with pytest.raises(ConfigError, match=r"lacks \{state_json\}"):
        make_client(adapter=adapter)
    adapter.prompt_templates = {"actoin": DEFAULT_TEMPLATES["action"]}
    with pytest.raises(ConfigError, match="Did you mean 'action'"):
        make_client(adapter=adapter)
    adapter.prompt_templates = {"action": DEFAULT_TEMPLATES["action"] + "{stat}"}
    with pytest.raises(ConfigError, match="unknown variable"):
        make_client(adapter=adapter)


def test_from_config_builds_a_registered_backend(tmp_path):
    made = {}

    def factory(*, adapter, model=None, **options):
        made.update(adapter=adapter, model=model, options=options)
        return FakeListChatModel(responses=['{"action": 0}'])

    registry.LLMS.add("fake-test", factory, source="tests")
    try:
        adapter = CorridorAdapter()
        config = LLMConfig(backend="fake-test:tiny", options={"temperature": 0}, cache="off")
        with LLMClient.from_config(config, adapter=adapter, run_dir=tmp_path) as client:
            assert client.suggest_action(np.array([9.0, 7.0])) == 0
            assert client.summary()["llm_backend"] == "fake-test:tiny"
        assert made == {"adapter": adapter, "model": "tiny", "options": {"temperature": 0}}
        assert (tmp_path / LOG_NAME).exists()
    finally:
        registry.LLMS._entries.pop("fake-test", None)


def test_from_config_simulated_is_installed_and_labelled(tmp_path):
    config = LLMConfig(backend="simulated", cache="off", options={"seed": 3})
    with LLMClient.from_config(config, adapter=CorridorAdapter(), run_dir=tmp_path) as client:
        assert client.suggest_action(np.array([2.0, 7.0])) == 2
        assert client.summary()["llm_backend"] == "simulated"
    assert json.loads((tmp_path / LOG_NAME).read_text().splitlines()[0])["backend"] == "simulated"


def test_unknown_langchain_provider_says_what_is_registered():
    with pytest.raises(
        PluginError,
        match="(?s)LangChain could not make chat model 'nosuchprovider:some-model'.*Registered guidedrl backends: .*simulated",
    ):
        LLMClient.from_config(
            LLMConfig(backend="nosuchprovider:some-model", cache="off"),
            adapter=CorridorAdapter(),
            run_dir=None,
        )
    with pytest.raises(
        PluginError, match="(?s)could not make chat model 'anthropic:claude-x'.*langchain-anthropic"
    ):
        LLMClient.from_config(
            LLMConfig(backend="anthropic:claude-x", cache="off"), adapter=CorridorAdapter(), run_dir=None
        )
    with pytest.raises(PluginError, match="unknown LLM backend 'simulatd'.*Did you mean 'simulated'"):
        LLMClient.from_config(
            LLMConfig(backend="simulatd", cache="off"), adapter=CorridorAdapter(), run_dir=None
        )


def test_backend_that_is_not_a_chat_model_is_refused():
    registry.LLMS.add("not-a-chat-model", lambda **kw: object(), source="tests")
    try:
        with pytest.raises(TypeError, match="BaseChatModel"):
            LLMClient.from_config(
                LLMConfig(backend="not-a-chat-model", cache="off"), adapter=CorridorAdapter(), run_dir=None
            )
    finally:
        registry.LLMS._entries.pop("not-a-chat-model", None)

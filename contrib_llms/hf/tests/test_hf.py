"""The hf backend: options and paths, the missing extra, and — on a tiny model the test builds and
fine-tunes itself (no download) — base + LoRA answering chat messages, through LangChain, through
the LLM layer (garbage answers are counted failures) and in a guided ``guidedrl run``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from guidedrl import registry
from guidedrl.config import LLMConfig
from guidedrl.errors import ConfigError
from guidedrl_llm_hf import ChatHF, make_hf, resolve_paths
from langchain_core.messages import HumanMessage, SystemMessage

SYSTEM = "Balance the pole on the cart."


def chats(n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        angle = (i - n / 2) / 20
        side = "right" if angle > 0 else "left"
        out.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"The pole leans {side} at angle {angle:.2f}. Which action?"},
                    {"role": "assistant", "content": json.dumps({"action": int(angle > 0)})},
                ],
                "kind": "actor",
            }
        )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """(tiny base model, a LoRA adapter overfitted on 8 chats, the chats)."""
    from guidedrl.llm.finetune import FinetuneConfig, finetune
    from guidedrl.llm.tinymodel import tiny_chat_model

    root = tmp_path_factory.mktemp("hf")
    data = chats()
    (root / "data.jsonl").write_text("".join(json.dumps(ex) + "\n" for ex in data))
    base = tiny_chat_model(root / "base", [m["content"] for ex in data for m in ex["messages"]] * 20)
    finetune(root / "data.jsonl", base, root / "lora", FinetuneConfig(epochs=15, lr=1e-2, batch_size=8), quiet=True)
    return base, root / "lora", data


def test_registered_through_the_entry_point():
    assert registry.LLMS.get("hf").factory is make_hf


def test_options_and_paths_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'max_tokens'"):
        make_hf(model=str(tmp_path), max_token=3)
    with pytest.raises(ConfigError, match="Did you mean 'lora'"):
        make_hf(model=str(tmp_path), lora_path=str(tmp_path))
    with pytest.raises(ConfigError, match="needs a model"):
        resolve_paths(None, None)
    with pytest.raises(ConfigError, match="not a local Hugging Face model directory"):
        resolve_paths(str(tmp_path), None)
    with pytest.raises(ConfigError, match="not a LoRA adapter directory"):
        resolve_paths(None, str(tmp_path))
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "m")}))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert resolve_paths(None, str(tmp_path)) == (tmp_path / "m", tmp_path)  # the adapter names its base


def test_missing_extra_names_the_pip_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ConfigError, match=r"pip install 'guidedrl-llm-hf\[hf\]'"):
        make_hf(model=str(tmp_path))


@pytest.mark.slow
def test_base_and_lora_answer_chat_messages_and_the_lora_learnt_its_answers(trained):
    base, lora, data = trained
    record = json.loads((lora / "finetune.json").read_text())
    assert record["loss_after"] < 0.2 * record["loss_before"], record
    tuned = make_hf(lora=str(lora), max_tokens=16)  # the adapter's record names its base model
    plain = make_hf(model=str(base), max_tokens=16)
    assert isinstance(tuned, ChatHF) and tuned.model_path == str(base) and tuned.model_name == "base+lora"
    assert tuned.context_window() == 4096 and tuned.lora_sha256 and plain.lora_sha256 is None
    # the answers of base and fine-tuned model never share a cache entry
    assert tuned._get_llm_string() != plain._get_llm_string()
    ex = data[0]["messages"]
    messages = [SystemMessage(content=ex[0]["content"]), HumanMessage(content=ex[1]["content"])]
    answer = tuned.invoke(messages)
    assert answer.text == ex[2]["content"], answer.text  # greedy decoding reproduces the learnt answer
    assert answer.usage_metadata["input_tokens"] == tuned.count_prompt_tokens(messages) > 0
    assert answer.response_metadata["finish_reason"] == "stop"
    assert plain.invoke(messages).text != ex[2]["content"]  # the random base model has not learnt it
    again = asyncio.run(tuned.ainvoke(messages))
    assert again.text == answer.text
    assert "".join(c.text for c in tuned.stream(messages)) == answer.text
    cut = tuned.invoke(messages, stop=['"action"'])
    assert cut.text == "{" and cut.response_metadata["finish_reason"] == "stop"


@pytest.mark.slow
def test_a_timeout_stops_the_generation(trained):
    base, _, _ = trained
    model = make_hf(model=str(base), max_tokens=64)
    model.timeout = 1e-6  # LangChain's standard parameter (the LLM layer's own is llm.timeout_s)
    with pytest.raises(TimeoutError, match="timeout"):
        model.invoke([HumanMessage(content="hello")])


@pytest.mark.slow
def test_an_adapter_of_another_model_and_a_model_without_chat_template_are_refused(trained, tmp_path):
    from guidedrl.llm.tinymodel import tiny_chat_model

    _, lora, data = trained
    narrow = tiny_chat_model(tmp_path / "narrow", [m["content"] for ex in data for m in ex["messages"]], hidden=16)
    with pytest.raises(ConfigError, match="does not fit the model"):
        make_hf(model=str(narrow), lora=str(lora))
    config = json.loads((narrow / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (narrow / "tokenizer_config.json").write_text(json.dumps(config))
    (narrow / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="no chat template"):
        make_hf(model=str(narrow), temperature=0.5)


@pytest.mark.slow
def test_garbage_answers_are_counted_failures_in_the_llm_layer(trained, tmp_path):
    from guidedrl.llm import LLMClient

    base, lora, _ = trained
    adapter = registry.make_adapter("CartPole-v1")
    config = LLMConfig(
        backend=f"hf:{base}", cache="off", retries=0, transient_retries=0, timeout_s=120,
        options={"lora": str(lora), "max_tokens": 24},
    )
    with LLMClient.from_config(config, adapter=adapter, run_dir=tmp_path) as client:
        action = client.suggest_action(np.array([0.0, 0.1, 0.05, 0.2], dtype=np.float32))
        summary = client.summary()
    # the tiny model learnt 8 chats, not guidedrl's prompts: whatever it says, nothing escapes
    assert action in (None, 0, 1)
    assert summary["llm_calls"] == 1 and summary["llm_tokens"] > 0
    if action is None:
        assert summary["llm_fallbacks"] == 1 and summary["llm_invalid"] == 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_guided_run_uses_the_finetuned_model(trained, tmp_path, capsys):
    from guidedrl.cli import main

    _, lora, _ = trained
    out = tmp_path / "run"
    code = main([
        "run", "--env", "CartPole-v1", "--methods", "ultra", "--llm", "hf", "--steps", "512", "--seed", "0",
        "--out", str(out), "--quiet", "--no-plot", "--llm-cache", "off",
        "--set", f"llm.options.lora={lora}", "--set", "llm.options.max_tokens=24", "--set", "llm.max_calls=6",
        "--set", "llm.retries=0",
    ])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["llm_backend"] == "hf" and 0 < summary["llm_calls"] <= 6
    assert summary["env_steps"] >= 512
    calls = [json.loads(x) for x in (out / "llm_calls.jsonl").read_text().splitlines()]
    assert all(c["model"] == "base+lora" for c in calls if c["event"] == "call")


def test_llm_options_adapter_is_refused_naming_lora(tmp_path):
    from guidedrl.llm import LLMClient

    config = LLMConfig(backend="simulated", options={"adapter": "runs/lora"})
    with pytest.raises(ConfigError, match=r"llm.options.adapter is reserved.*llm.options.lora"):
        LLMClient.from_config(config, adapter=registry.make_adapter("CartPole-v1"), run_dir=tmp_path)

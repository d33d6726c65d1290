"""The llamacpp backend: model resolution, prompt format, grammar schema, and a real constrained
completion with gemma3-270m through the LLM layer (slow; kept in CI, which installs llama-cpp-python)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from guidedrl import registry
from guidedrl.config import LLMConfig
from guidedrl.errors import ConfigError
from guidedrl.llm import CriticalStatesAnswer, LLMClient, action_schema
from guidedrl_llm_llamacpp import ChatLlamaCpp, make_llamacpp, resolve_model
from guidedrl_llm_llamacpp.model import grammar_schema
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage


def require_llama_cpp() -> None:
    try:
        import llama_cpp  # noqa: F401
    except ImportError as exc:  # CI installs it: a missing build is a failure, not a skip
        pytest.fail(f"llama-cpp-python is not importable ({exc}); run `bash scripts/setup.sh llamacpp`, which builds it")


@pytest.fixture(scope="module")
def models_dir(request: pytest.FixtureRequest) -> Path:
    """Where gemma3-270m is assembled: pytest's cache dir, so CI assembles it once."""
    return Path(request.config.cache.mkdir("guidedrl-llamacpp-models"))


def test_registered_through_the_entry_point():
    assert registry.LLMS.get("llamacpp").factory is make_llamacpp


def test_grammar_schema_makes_integer_ranges_enums_and_drops_optional_text():
    schema = grammar_schema(
        action_schema({"type": "integer", "minimum": 0, "maximum": 2}).model_json_schema()
    )
    assert schema["properties"] == {
        "action": {"description": "The action.", "title": "Action", "enum": [0, 1, 2]}
    }
    nested = grammar_schema(CriticalStatesAnswer.model_json_schema())
    assert set(nested["$defs"]["CriticalStep"]["properties"]) == {"t", "score"}
    assert grammar_schema({"type": "integer", "minimum": 0, "maximum": 10_000}) == {
        "type": "integer",
        "minimum": 0,
        "maximum": 10_000,
    }


def test_completion_prompt_has_examples_and_every_turn():
    model = ChatLlamaCpp(model_name="m", model_path="/nonexistent.gguf", few_shot=[("Q1?", '{"a": 1}')])
    prompt = model.completion_prompt(
        [
            SystemMessage(content="Answer in JSON."),
            HumanMessage(content="What now?"),
            AIMessage(content="dunno"),
            HumanMessage(content="That answer cannot be used."),
        ]
    )
    assert prompt == (
        'Answer in JSON.\n\nQuestion:\nQ1?\nAnswer:\n{"a": 1}\n\nQuestion:\nWhat now?\nAnswer:\ndunno\n\n'
        "Question:\nThat answer cannot be used.\nAnswer:\n"
    )


def test_unknown_models_and_paths_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'gemma3-270m'"):
        resolve_model("gemma3-270")
    with pytest.raises(ConfigError, match="not a file"):
        resolve_model(None, str(tmp_path / "missing.gguf"))
    with pytest.raises(ConfigError, match="Did you mean 'n_ctx'"):
        make_llamacpp(model="gemma3-270m", n_ctxx=512)


def test_gemma_is_assembled_once_atomically(models_dir, monkeypatch):
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(models_dir))
    path = resolve_model("gemma3-270m")
    assert path.is_file() and path.stat().st_size > 100_000_000 and path.parent == models_dir / "models"
    mtime = path.stat().st_mtime_ns
    assert resolve_model("gemma3-270m") == path and path.stat().st_mtime_ns == mtime
    assert not list(path.parent.glob("*.part"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gemma_suggests_a_legal_cartpole_action_end_to_end(models_dir, monkeypatch, tmp_path):
    require_llama_cpp()
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(models_dir))
    adapter = registry.make_adapter("CartPole-v1")
    config = LLMConfig(
        backend="llamacpp:gemma3-270m",
        cache="off",
        log="full",
        timeout_s=600,
        retries=0,
        transient_retries=0,
        options={"n_ctx": 2048, "max_tokens": 32},
    )
    with LLMClient.from_config(config, adapter=adapter, run_dir=tmp_path) as client:
        action = client.suggest_action(np.array([0.0, 0.1, 0.05, 0.2], dtype=np.float32))
        summary = client.summary()
    (line,) = [json.loads(x) for x in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]
    assert line["valid"] is True, line
    answer = json.loads(line["answer"])  # constrained decoding: the raw text is schema-shaped JSON
    assert set(answer) == {"action"} and answer["action"] in (0, 1)
    assert action == answer["action"] and action in (0, 1)
    assert summary["llm_backend"] == "llamacpp:gemma3-270m" and summary["llm_tokens"] > 0


def test_missing_llama_cpp_names_the_setup_script(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(ConfigError, match="bash scripts/setup.sh llamacpp"):
        make_llamacpp(model="gemma3-270m")

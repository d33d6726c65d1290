"""LangChain's standard tests (``langchain-tests``) for ``ChatLlamaCpp``. The unit suite needs no model;
the integration suite runs the real gemma3-270m on the CPU (offline; answers capped at 16 tokens to
bound its time; marked slow).
What the model does not do is declared through the suite's own properties."""

from __future__ import annotations

from pathlib import Path

import pytest
from guidedrl_llm_llamacpp import ChatLlamaCpp, resolve_model
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import ValidationError


class _Declared:
    model_path = "/nonexistent/model.gguf"  # the unit suite never loads it

    @property
    def chat_model_class(self) -> type[ChatLlamaCpp]:
        return ChatLlamaCpp

    @property
    def chat_model_params(self) -> dict:
        return {"model": "gemma3-270m", "model_path": self.model_path, "n_ctx": 2048}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def supports_json_mode(self) -> bool:
        return False

    @property
    def supports_model_override(self) -> bool:
        return False


class TestLlamaCppUnit(_Declared, ChatModelUnitTests):
    pass


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestLlamaCppIntegration(_Declared, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict:
        # short answers keep the suite's time bounded (the standard parameters ask for 100 tokens)
        return {**super().chat_model_params, "max_tokens": 16}

    @pytest.fixture(autouse=True)
    def _gemma(self, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
        pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (scripts/setup.sh builds it)")
        cache = getattr(request.config, "cache", None)
        where = Path(cache.mkdir("guidedrl-llamacpp-models")) if cache else tmp_path_factory.getbasetemp()
        monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(where))
        type(self).model_path = str(resolve_model("gemma3-270m"))


def test_unknown_arguments_are_rejected():
    with pytest.raises(ValidationError, match="top_k"):
        ChatLlamaCpp(model="m", model_path="/x.gguf", top_k=3)
    model = ChatLlamaCpp(model="m", model_path="/x.gguf", timeout=5, stop=["\n"], max_retries=2)
    assert model._get_ls_params()["ls_stop"] == ["\n"] and model.context_window() == 2048

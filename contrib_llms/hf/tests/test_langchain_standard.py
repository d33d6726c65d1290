"""LangChain's standard unit tests (``langchain-tests``) for ``ChatHF``: construction, standard
parameters, LangSmith parameters; no model is loaded (the pipeline is never called). What the model
does not do is declared through the suite's own properties."""

from __future__ import annotations

import pytest
from guidedrl_llm_hf import ChatHF, make_hf
from langchain_huggingface import HuggingFacePipeline
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests


class _Declared:
    @property
    def chat_model_class(self) -> type[ChatHF]:
        return ChatHF

    @property
    def chat_model_params(self) -> dict:
        return {
            "llm": HuggingFacePipeline(model_id="/nonexistent/model"),
            "tokenizer": object(),  # never used: nothing is generated
            "model_name": "tiny",
            "model_path": "/nonexistent/model",
        }

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


class TestHFUnit(_Declared, ChatModelUnitTests):
    pass


@pytest.mark.slow
@pytest.mark.timeout(900)
class TestHFIntegration(_Declared, ChatModelIntegrationTests):
    """The integration suite on a tiny random model the fixture builds (garbage text: the suite checks
    the plumbing — messages, usage, streaming, async, stop — not the words)."""

    model_dir: str = ""

    @property
    def chat_model_params(self) -> dict:
        chat = make_hf(model=self.model_dir, max_tokens=16)
        return {
            "llm": chat.llm, "tokenizer": chat.tokenizer, "model_name": chat.model_name,
            "model_path": chat.model_path, "context": chat.context, "max_tokens": 16,
        }

    @pytest.fixture(autouse=True)
    def _tiny(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        if not type(self).model_dir:
            from guidedrl.llm.tinymodel import tiny_chat_model

            texts = ["Hello, how are you?", "The answer is 42.", "Count from 1 to 5: 1 2 3 4 5"] * 50
            type(self).model_dir = str(tiny_chat_model(tmp_path_factory.mktemp("hf-std") / "m", texts))

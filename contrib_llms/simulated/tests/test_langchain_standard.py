"""LangChain's standard tests (``langchain-tests``) for ``SimulatedChatModel``: it is offline, so both
the unit and the integration suite run; what it does not do is declared through the suite's own
properties (no tool calling, no structured output, no multimodal inputs)."""

from __future__ import annotations

import pytest
from guidedrl.llm.testing import CorridorAdapter
from guidedrl_llm_simulated import SimulatedChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import ValidationError


class _Declared:
    @property
    def chat_model_class(self) -> type[SimulatedChatModel]:
        return SimulatedChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"adapter": CorridorAdapter()}

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


class TestSimulatedUnit(_Declared, ChatModelUnitTests):
    pass


class TestSimulatedIntegration(_Declared, ChatModelIntegrationTests):
    pass


def test_unknown_arguments_are_rejected_and_standard_ones_honoured():
    with pytest.raises(ValidationError, match="top_k"):
        SimulatedChatModel(adapter=CorridorAdapter(), top_k=3)
    with pytest.raises(ValidationError, match="temperature"):
        SimulatedChatModel(adapter=CorridorAdapter(), temperature=0.7)  # deterministic: only 0
    assert SimulatedChatModel(adapter=CorridorAdapter(), stop=["guidedrl"]).invoke("hello").text == "I am "
    assert SimulatedChatModel(adapter=CorridorAdapter(), max_tokens=3).invoke("hello").text == "I am guidedr"
    slow = SimulatedChatModel(adapter=CorridorAdapter(), latency_ms=500, timeout=0.05)
    with pytest.raises(TimeoutError):
        slow.invoke("hello")
    chunks = list(SimulatedChatModel(adapter=CorridorAdapter()).stream("hello"))
    assert len(chunks) > 1 and "".join(c.text for c in chunks).startswith("I am guidedrl's simulated LLM")

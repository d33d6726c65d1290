"""The ``simulated`` LLM backend: an honest offline stand-in for an LLM.

It reads the exact JSON block every guidedrl prompt carries, asks the env adapter's expert the same
question and answers in the requested JSON schema, corrupting a configurable fraction of answers
(``error_rate``: valid but wrong; ``invalid_rate``: malformed or out of range).
"""

from guidedrl_llm_simulated.model import SimulatedChatModel, make_simulated

__all__ = ["SimulatedChatModel", "make_simulated"]

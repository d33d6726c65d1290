"""From an answer's raw text to a checked Python value: the strict LangChain parser of every kind.

LangChain's ``PydanticOutputParser`` parses; :class:`StrictPydanticOutputParser` adds what it lacks
for text from an untrusted model (see the class). ``with_structured_output`` is not used: it needs
a backend with tool calling or a JSON mode (the simulated and llama.cpp backends have neither), and
the layer must keep the raw text to cache and log it.
"""

from __future__ import annotations

import functools
from typing import Any

import pydantic
from guidedrl.llm.safety import clean_text, load_answer_json
from langchain_core.exceptions import OutputParserException
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.outputs import Generation

#: Errors that mean "the LLM answered, but not usably": the answer is re-asked, then falls back.
#: Parsing and validation catch every ``Exception`` (an answer must never stop training); these are
#: the expected ones, the others are logged with their type name so that a validator's bug shows.
INVALID_ERRORS = (OutputParserException, ValueError, TypeError, KeyError, IndexError)


class StrictPydanticOutputParser(PydanticOutputParser):
    """LangChain's parser, but truncated JSON is an error (its default silently completes it), size
    and nesting depth are bounded before parsing, NaN/Infinity are rejected and strings are made
    surrogate-free (:func:`guidedrl.llm.safety.load_answer_json`)."""

    def parse_result(self, result: list[Generation], *, partial: bool = False) -> Any:
        return self._parse_obj(load_answer_json(clean_text(result[0].text)))


@functools.lru_cache(maxsize=256)
def parser_for(schema: type[pydantic.BaseModel]) -> tuple[StrictPydanticOutputParser, str, dict[str, Any]]:
    """The parser of ``schema``, its format instructions (shown in the prompt) and its JSON schema
    (for backends that constrain decoding); built once per schema."""
    parser = StrictPydanticOutputParser(pydantic_object=schema)
    return parser, parser.get_format_instructions(), schema.model_json_schema()


def parse_and_validate(parser: StrictPydanticOutputParser, validator: Any, raw: str) -> Any:
    """``raw`` parsed by ``parser``, then turned into the caller's value by ``validator`` (if any);
    raises with the reason fed back to the LLM when the answer cannot be used."""
    parsed = parser.parse(raw)
    return validator(parsed) if validator is not None else parsed


def feedback(error: str) -> str:
    """The re-ask message after an unusable answer."""
    return (
        f"That answer cannot be used: {error}\n"
        "Answer the same question again with one JSON object that follows the schema, and nothing else."
    )

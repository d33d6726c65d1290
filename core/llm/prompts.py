"""Prompt templates, one per question kind, and how a :class:`~guidedrl.llm.Question` becomes messages.

A template is the text of the human message, a LangChain f-string template. Variables:

- ``{task}`` the env's task (``adapter.task``), ``{description}`` the state(s) in words
  (``adapter.describe()``), ``{vocabulary}`` what the actions mean, ``{state_json}`` the exact JSON
  block ``{"question": kind, "env": env_id, ...}`` (the template puts it inside a fenced ``json``
  block), ``{format_instructions}`` the answer's JSON schema — all five are required;
- ``{extra}`` kind-specific instructions (bad action, history, number of steps), optional.

Templates are looked up in this order: ``Question.template`` (a method's own wording, also the
``template=`` argument of the convenience methods), ``LLMClient.templates[kind]`` (which starts as
:data:`DEFAULT_TEMPLATES` updated with the adapter's ``prompt_templates`` dict, the per-env wording).
The system message is ``templates["system"]``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from guidedrl.errors import ConfigError, did_you_mean
from guidedrl.llm.jsondata import jsonable
from guidedrl.llm.parsing import StrictPydanticOutputParser, parser_for
from guidedrl.llm.questions import KINDS, Question
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate

REQUIRED_VARIABLES = frozenset({"task", "description", "vocabulary", "state_json", "format_instructions"})
OPTIONAL_VARIABLES = frozenset({"extra"})

SYSTEM = (
    "You advise a reinforcement-learning agent. You read the state of its environment and answer "
    "exactly one question with a single JSON object that follows the given schema, and nothing else."
)

_STATE = """Task: {task}

{vocabulary}

State in words: {description}

Exact state:
```json
{state_json}
```
"""

_TRAJECTORY = """Task: {task}

{vocabulary}

Trajectory in words (t: state; action taken; reward):
{description}

Exact trajectory (`states[t]` was seen, `actions[t]` taken, `rewards[t]` received):
```json
{state_json}
```
"""

DEFAULT_TEMPLATES: dict[str, str] = {
    "system": SYSTEM,
    "action": _STATE
    + """{extra}
Which action should the agent take now to make progress on the task?

{format_instructions}""",
    "implicit_reward": _STATE
    + """{extra}
How good is the action given in the JSON block (`action`) in this state, from -1 (harmful) to 1
(ideal)?

{format_instructions}""",
    "critical_states": _TRAJECTORY
    + """{extra}
Which steps are critical, i.e. steps where the action taken strongly changes what happens next?
`t` is the index into `states`. Give at most the number of steps asked for, most critical first.

{format_instructions}""",
    "instructions": _STATE
    + """{extra}
Write a plan for the team: a list of instructions, each giving one agent a command and its
parameter. Use only the commands, parameters and agents described above.

{format_instructions}""",
    "reward_critique": _TRAJECTORY
    + """{extra}
Act as a value critic. For every key step listed in `key_steps`, judge whether the action taken there
helped or harmed the task in the long run, and answer a level: -2 very harmful, -1 harmful,
1 helpful, 2 very helpful.

{format_instructions}""",
}


def check_template(kind: str, template: str) -> None:
    """Raise :class:`ConfigError` when ``template`` lacks a required variable or uses an unknown one."""
    if kind == "system":
        return
    try:
        variables = set(PromptTemplate.from_template(template).input_variables)
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"prompt template for {kind!r} is not a valid f-string template ({exc}); write literal "
            "braces as {{ and }}."
        ) from exc
    missing = REQUIRED_VARIABLES - variables
    if missing:
        raise ConfigError(
            f"prompt template for {kind!r} lacks {', '.join('{' + m + '}' for m in sorted(missing))}; "
            "every prompt must carry the task, the state in words, the action vocabulary, the exact "
            "JSON state and the format instructions."
        )
    unknown = variables - REQUIRED_VARIABLES - OPTIONAL_VARIABLES
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"prompt template for {kind!r} uses unknown variable {{{name}}}."
            f"{did_you_mean(name, REQUIRED_VARIABLES | OPTIONAL_VARIABLES)} Variables: "
            f"{', '.join(sorted(REQUIRED_VARIABLES | OPTIONAL_VARIABLES))}."
        )


def merge_templates(*overrides: Mapping[str, str] | None) -> dict[str, str]:
    """:data:`DEFAULT_TEMPLATES` updated with each override in turn, every template checked."""
    templates = dict(DEFAULT_TEMPLATES)
    for override in overrides:
        for kind, template in (override or {}).items():
            if kind not in templates and kind not in KINDS:
                # custom kinds are allowed, but a misspelt built-in kind should not pass silently
                hint = did_you_mean(kind, [*KINDS, "system"], n=1)
                if hint:
                    raise ConfigError(f"prompt template for unknown kind {kind!r}.{hint}")
            check_template(kind, template)
            templates[kind] = template
    return templates


def state_block(kind: str, env_id: str, payload: Mapping[str, Any]) -> str:
    """The exact JSON block of a prompt: ``{"question": kind, "env": env_id, **payload}``."""
    return json.dumps({"question": kind, "env": env_id, **payload}, sort_keys=False, default=jsonable)


@functools.lru_cache(maxsize=64)
def _chat_template(template: str) -> ChatPromptTemplate:
    """The parsed template (parsing it is most of the cost of rendering a question)."""
    return ChatPromptTemplate.from_messages(
        [("system", "{system}"), ("human", template)], template_format="f-string"
    )


def render(
    *,
    system: str,
    template: str,
    task: str,
    description: str,
    vocabulary: str,
    state_json: str,
    format_instructions: str,
    extra: str = "",
) -> list[BaseMessage]:
    """The system and human messages of a question."""
    return _chat_template(template).format_messages(
        system=system,
        task=task,
        description=description,
        vocabulary=vocabulary,
        state_json=state_json,
        format_instructions=format_instructions,
        extra=f"\n{extra.strip()}\n" if extra else "",
    )


def render_question(
    question: Question, templates: Mapping[str, str], adapter: Any
) -> tuple[list[BaseMessage], StrictPydanticOutputParser, dict[str, Any]]:
    """The messages of ``question`` for ``adapter``'s env, with the parser and JSON schema of its answer.

    The template is ``question.template`` or ``templates[question.kind]``; the system message is
    ``templates["system"]``."""
    template = question.template or templates.get(question.kind)
    if template is None:
        raise ValueError(
            f"no prompt template for question kind {question.kind!r}; pass Question(template=...) "
            f"or add LLMClient.templates[{question.kind!r}]. Kinds with a template: "
            f"{', '.join(k for k in templates if k != 'system')}."
        )
    if question.template is not None:
        check_template(question.kind, question.template)
    parser, instructions, json_schema = parser_for(question.schema)
    messages = render(
        system=templates["system"],
        template=template,
        task=getattr(adapter, "task", "") or "",
        description=question.description,
        vocabulary=vocabulary_text(adapter),
        state_json=state_block(question.kind, getattr(adapter, "env_id", ""), question.payload),
        format_instructions=instructions,
        extra=question.extra,
    )
    return messages, parser, json_schema


def vocabulary_text(adapter: Any) -> str:
    """What the actions (or plan items) mean, from ``adapter.vocabulary.prompt_text()``."""
    vocab = getattr(adapter, "vocabulary", None)
    if vocab is not None and hasattr(vocab, "prompt_text"):
        return vocab.prompt_text()
    return "Instructions are objects {command, parameter, agent}."

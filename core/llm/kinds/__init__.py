"""The built-in question kinds, one module each: what is asked, the answer's schema, how an answer
is checked and how the answers of one request are combined.

A kind module has ``KIND`` (its name, the key of its prompt template in
:data:`guidedrl.llm.prompts.DEFAULT_TEMPLATES`), its pydantic answer schema, a ``question(asker, ...)``
that builds the :class:`~guidedrl.llm.Question` (payload, words, validator) and a function that asks
it through an :class:`~guidedrl.llm.kinds.common.Asker` (the client) and returns the value. Getting
the answer (cache, budgets, retries, log) is :mod:`guidedrl.llm.transport`'s job, never a kind's.
"""

from guidedrl.llm.kinds import action, critical_states, implicit_reward, instructions, reward_critique
from guidedrl.llm.kinds.action import action_schema
from guidedrl.llm.kinds.critical_states import CriticalStatesAnswer, CriticalStep
from guidedrl.llm.kinds.implicit_reward import ImplicitRewardAnswer
from guidedrl.llm.kinds.instructions import Instruction, InstructionsAnswer
from guidedrl.llm.kinds.reward_critique import CritiquedStep, RewardCritiqueAnswer

__all__ = [
    "CriticalStatesAnswer",
    "CriticalStep",
    "CritiquedStep",
    "ImplicitRewardAnswer",
    "Instruction",
    "InstructionsAnswer",
    "RewardCritiqueAnswer",
    "action",
    "action_schema",
    "critical_states",
    "implicit_reward",
    "instructions",
    "reward_critique",
]

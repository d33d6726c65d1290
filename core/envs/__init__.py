"""Environment adapters: what a guided run needs from an env beyond the Gymnasium/PettingZoo API.

An adapter makes the env, describes a state in words plus exact JSON (every LLM prompt carries both),
knows what each action means and parses an LLM's answer back into a legal action, and optionally
carries an *expert* that answers the same questions an LLM is asked (it powers the ``simulated`` LLM
backend and the benchmarks' upper bound), a simulator check of an action (``simulate``) and a plan
executor (``validate_plan`` / ``execute_plan``). The shapes are protocols in
:mod:`guidedrl.envs.protocols`; :func:`check_adapter` checks them at start-up against what the
run's methods declare they need (``requires``).
"""

from guidedrl.envs.base import (
    BoxActions,
    Description,
    DiscreteActions,
    EnvAdapter,
    Expert,
    InvalidAction,
    excerpt,
    instruction_fields,
    MissingAdapterError,
    MultiAgentEnvAdapter,
    PlainGymAdapter,
)
from guidedrl.envs.factored import FactoredActions
from guidedrl.envs.protocols import (
    CAPABILITIES,
    ActionVocabulary,
    Adapter,
    PlanExecutor,
    PlanStep,
    SimResult,
    Simulator,
    check_adapter,
    method_requirements,
)

__all__ = [
    "CAPABILITIES",
    "ActionVocabulary",
    "Adapter",
    "BoxActions",
    "Description",
    "DiscreteActions",
    "EnvAdapter",
    "Expert",
    "FactoredActions",
    "InvalidAction",
    "MissingAdapterError",
    "MultiAgentEnvAdapter",
    "PlainGymAdapter",
    "excerpt",
    "instruction_fields",
    "PlanExecutor",
    "PlanStep",
    "SimResult",
    "Simulator",
    "check_adapter",
    "method_requirements",
]

"""Environment adapters: what a guided run needs from an env beyond the Gymnasium/PettingZoo API.

An adapter makes the env, describes a state in words plus exact JSON (every LLM prompt carries both),
knows what each action means and parses an LLM's answer back into a legal action, and optionally
carries an *expert* that answers the same questions an LLM is asked (it powers the ``simulated`` LLM
backend and the benchmarks' upper bound).
"""

from guidedrl.envs.base import (
    BoxActions,
    Description,
    DiscreteActions,
    EnvAdapter,
    Expert,
    InvalidAction,
    MissingAdapterError,
    MultiAgentEnvAdapter,
    PlainGymAdapter,
)

__all__ = [
    "BoxActions",
    "Description",
    "DiscreteActions",
    "EnvAdapter",
    "Expert",
    "InvalidAction",
    "MissingAdapterError",
    "MultiAgentEnvAdapter",
    "PlainGymAdapter",
]

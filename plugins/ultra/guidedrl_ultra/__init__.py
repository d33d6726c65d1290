"""ULTRA for guidedrl: "LLM-Guided Reinforcement Learning: Addressing Training Bottlenecks through
Policy Modulation" (Tan, Yan, Yang; arXiv 2505.20671).

Run it with ``guidedrl run --env ALE/Pong-v5 --methods ultra --set ultra.variant=ra --llm simulated``;
settings are :class:`UltraConfig`; the choices the paper leaves open are in the README.
"""

from guidedrl_ultra.config import UltraConfig
from guidedrl_ultra.matching import CriticalEntry, CriticalStateTable
from guidedrl_ultra.plugin import Ultra

__all__ = ["CriticalEntry", "CriticalStateTable", "Ultra", "UltraConfig"]

"""Multi-agent training over Tianshou: PettingZoo parallel envs' agents as vectorised sub-envs,
MAPPO (CTDE) / IPPO with Tianshou's collector, buffer, GAE and PPO (see :mod:`.learner`)."""

from guidedrl.train.marl.envs import AgentVectorEnv, ObsLayout, episode_metrics
from guidedrl.train.marl.learner import MAPPO, MultiAgentCollector, MultiAgentLearner, evaluate_policy
from guidedrl.train.marl.nets import MultiAgentActor, MultiAgentCritic, MultiAgentPolicy

__all__ = [
    "MAPPO", "AgentVectorEnv", "MultiAgentActor", "MultiAgentCollector", "MultiAgentCritic", "MultiAgentLearner",
    "MultiAgentPolicy", "ObsLayout", "episode_metrics", "evaluate_policy",
]

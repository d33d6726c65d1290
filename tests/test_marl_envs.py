"""The multi-agent learner's Tianshou side: PettingZoo agents as vectorised sub-envs, and the actors'
per-agent calls (guidedrl.train.marl)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from guidedrl.guidance import imitation_loss
from guidedrl.train.marl.envs import AgentVectorEnv, ObsLayout
from guidedrl.train.marl.nets import MultiAgentActor, MultiAgentCritic, MultiAgentPolicy


class Staggered(ParallelEnv):
    """agent_1 terminates after 3 steps, agent_0 is truncated after 6; reward 1 per step for action 1.
    agent_1 has 2 actions, agent_0 3; the observation is (t/6, agent index, reset seed)."""

    metadata = {"name": "staggered_v0"}
    resets = 0

    def __init__(self):
        self.possible_agents = ["agent_0", "agent_1"]

    def observation_space(self, agent):
        return spaces.Box(0, 1e9, (3,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(3 if agent == "agent_0" else 2)

    def _obs(self):
        return {a: np.array([self.t / 6, i, self.seed], np.float32) for i, a in enumerate(self.possible_agents) if a in self.agents}

    def reset(self, seed=None, options=None):
        Staggered.resets += 1
        self.t, self.seed = 0, -1 if seed is None else seed
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {"k": 1} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)  # absent agents get no action
        self.t += 1
        rew = {a: float(actions[a] == 1) for a in self.agents}
        term = {a: a == "agent_1" and self.t >= 3 for a in self.agents}
        trunc = {a: a == "agent_0" and self.t >= 6 for a in self.agents}
        obs = self._obs()
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, {a: {} for a in obs}


def make_env(n=2, joint=True):
    return AgentVectorEnv(Staggered, n, ["agent_0", "agent_1"], ObsLayout(2, 3, joint=joint))


def test_sub_envs_are_agents_and_absent_agents_are_masked():
    env = make_env()
    lay = env.layout
    assert len(env) == env.env_num == 4 and lay.width == 3 + 2 + 6 + 1
    env.seed([5, 7])
    obs, _ = env.reset()
    assert obs.shape == (4, lay.width)
    np.testing.assert_array_equal(obs[:, lay.onehot], np.eye(2)[[0, 1, 0, 1]])
    np.testing.assert_array_equal(obs[:, 2], [5, 5, 7, 7])  # env e reset with its own seed
    np.testing.assert_array_equal(obs[0, lay.joint_part], np.concatenate([obs[0, lay.own], obs[1, lay.own]]))
    alive, dones = [], []
    for _ in range(6):
        obs, rew, term, trunc, _ = env.step(np.ones(4, dtype=np.int64))
        alive.append(obs[:, lay.alive_col].tolist())
        dones.append((term | trunc).tolist())
        left = np.flatnonzero((term | trunc) & ~np.repeat(env.env_done, 2))
        if len(left):  # the collector resets a sub-env whose agent left: padding, the env keeps running
            before = Staggered.resets
            pad, _ = env.reset(env_id=left)
            assert Staggered.resets == before and (pad[:, lay.own] == 0).all() and (pad[:, lay.alive_col] == 0).all()
    # agent_1 terminates at step 3 (alone); every sub-env is done when the env's episode ends at step 6
    assert dones[2] == [False, True, False, True]
    assert dones[5] == [True] * 4
    assert [r[0] for r in env.pop_finished()] == [0, 1]
    before = Staggered.resets
    obs, _ = env.reset(env_id=np.arange(4))
    assert Staggered.resets == before + 2  # each env reset once for its two agents
    assert (obs[:, lay.alive_col] == 1).all() and (obs[:, 2] == -1).all()  # later resets continue the env's RNG


def test_team_return_and_rewards_of_agents_that_left():
    env = make_env(n=1)
    env.reset()
    total = np.zeros(2)
    for _ in range(6):
        _, rew, term, trunc, _ = env.step(np.ones(2, dtype=np.int64))
        total += rew
        left = np.flatnonzero((term | trunc) & ~np.repeat(env.env_done, 2))
        if len(left):
            env.reset(env_id=left)
    assert total.tolist() == [6, 3]  # padding steps earn nothing
    (_, ret, length, _), = env.pop_finished()
    assert (ret, length) == (9.0, 6)


@pytest.mark.parametrize("share", [True, False])
def test_actor_per_agent_calls_and_masked_actions(share):
    lay = ObsLayout(2, 3, joint=True)
    actor = MultiAgentActor(["agent_0", "agent_1"], lay, [3, 2], (16,), share)
    policy = MultiAgentPolicy(actor, spaces.Discrete(3))
    assert policy.agents == ["agent_0", "agent_1"] and policy.obs_dim == 3
    own = torch.randn(5, 3)
    logits = policy.logits(own, "agent_1")
    assert logits.shape == (5, 3) and (logits[:, 2] < -1e8).all()  # agent_1 has no action 2
    # the flat sub-env observation gives the same logits as the agent's own observation
    joint = np.zeros((5, 2, 3), np.float32)
    joint[:, 1] = own.numpy()
    flat = lay.flat(joint, np.ones((5, 2), bool))[:, 1]
    torch.testing.assert_close(actor(flat)[0], logits)
    act = torch.tensor([0, 1, 1, 0, 1])
    torch.testing.assert_close(policy.log_prob(own, act, "agent_1"), torch.log_softmax(logits, -1).gather(-1, act.view(-1, 1)).squeeze(-1))
    loss = imitation_loss(policy, own[:, :2], act, agent="agent_1")  # narrower observations are zero-padded
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert any(k.startswith("nets.1.") for k in actor.state_dict()) == (not share)


@pytest.mark.parametrize("central", [True, False])
def test_critic_reads_the_joint_or_the_own_observation(central):
    lay = ObsLayout(2, 3, joint=central)
    critic = MultiAgentCritic(lay, (8,), central)
    assert critic.net[0].in_features == (6 if central else 3) + 2
    joint = np.random.default_rng(0).normal(size=(4, 2, 3)).astype(np.float32)
    flat = lay.flat(joint, np.ones((4, 2), bool)).reshape(8, -1)
    changed = joint.copy()
    changed[:, 1] += 1.0  # the other agent's observation
    flat2 = lay.flat(changed, np.ones((4, 2), bool)).reshape(8, -1)
    v, v2 = critic(flat), critic(flat2)
    assert v.shape == (8,)
    assert (not torch.allclose(v[0::2], v2[0::2])) == central  # agent_0's value sees agent_1 only under CTDE

"""ACE's pieces on their own: key steps, low-reward choice, importance weights, the JSONL export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guidedrl.types import Episode
from guidedrl_ace import actor, critic, finetune, replay
from guidedrl_ace.config import AceConfig


def episode(rew):
    n = len(rew)
    return Episode(obs=np.zeros((n, 2), np.float32), act=np.zeros(n, np.int64), rew=np.asarray(rew, float))


def test_low_reward_steps_lowest_first_and_capped():
    cfg = AceConfig(reward_threshold=0.5, per_episode=2)
    assert actor.low_reward_steps(cfg, episode([0.9, 0.1, 0.8, 0.0, 0.3])) == [3, 1]
    assert actor.low_reward_steps(cfg, episode([0.9, 0.8])) == []


def test_key_steps_by_median_or_zero_baseline():
    rew = [0.8, 0.8, 0.8, 0.0, 0.8]
    assert critic.key_steps(AceConfig(key_threshold=0.5, key_baseline="median"), episode(rew)) == [3]
    # the paper's |r| > threshold: every positive step is a key step, largest first, capped
    assert critic.key_steps(AceConfig(key_threshold=0.5, key_baseline="zero", max_keys=2), episode(rew)) == [0, 1]
    assert critic.window_of(AceConfig(window=2), episode(rew), [3]) == (1, 4)
    assert critic.window_of(AceConfig(window=0), episode(rew), [3]) == (0, 5)


def test_importance_weight_grows_with_the_gain_and_is_clipped():
    cfg = AceConfig(weight_scale=4.0, max_weight=3.0)
    assert replay.importance_weight(cfg, 0.5, 0.5) == 1.0
    assert replay.importance_weight(cfg, 0.6, 0.5) == pytest.approx(1.4)
    assert replay.importance_weight(cfg, 1.0, 0.0) == 3.0
    assert replay.importance_weight(cfg, 0.0, 1.0) == 1.0


def test_finetune_jsonl_is_trl_conversational(tmp_path):
    path = tmp_path / "ft.jsonl"
    assert finetune.write(path, [finetune.chat("sys", "state", {"action": 3, "reason": "r"}, "actor")]) == 1
    finetune.write(path, [finetune.chat("sys", "traj", {"rewards": [{"t": 0, "level": -2}]}, "critic")])
    rows = finetune.read(path)
    assert [r["kind"] for r in rows] == ["actor", "critic"]
    for r in rows:  # what TRL's SFTTrainer reads: a "messages" list of {role, content}
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert all(isinstance(m["content"], str) for m in r["messages"])
    assert json.loads(rows[0]["messages"][2]["content"])["action"] == 3


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        AceConfig(beta=1.5)
    with pytest.raises(ValueError):
        AceConfig(max_weight=0.5)


def test_ace_needs_the_mixed_replay_of_an_off_policy_run(tmp_path):
    import torch

    from guidedrl.config import RunConfig
    from guidedrl.context import RunContext
    from guidedrl.errors import ConfigError
    from guidedrl.llm.testing import CorridorAdapter
    from guidedrl.plugins import make_manager
    from guidedrl_ace import Ace

    ctx = RunContext(config=RunConfig(algo="ppo"), adapter=CorridorAdapter(), pm=make_manager(()), run_dir=tmp_path,
                     device=torch.device("cpu"))
    with pytest.raises(ConfigError, match="--algo sac"):
        Ace().identify_critical_states(ctx, [episode([0.0, 1.0])])


def test_state_dict_round_trip_restores_budgets_for_resume(tmp_path):
    import torch

    from guidedrl.config import RunConfig
    from guidedrl.context import RunContext
    from guidedrl.llm.testing import CorridorAdapter
    from guidedrl.plugins import make_manager
    from guidedrl_ace import Ace
    from guidedrl_ace.state import state_of

    ctx = RunContext(config=RunConfig(), adapter=CorridorAdapter(), pm=make_manager(()), run_dir=tmp_path,
                     device=torch.device("cpu"))
    first = Ace()
    st = first._st(ctx)
    st.actor_calls, st.critic_calls, st.exported = 7, 3, 5
    saved = first.state_dict()
    resumed, ctx2 = Ace(), RunContext(config=RunConfig(), adapter=CorridorAdapter(), pm=make_manager(()),
                                      run_dir=tmp_path, device=torch.device("cpu"))
    resumed.load_state_dict(saved)
    assert resumed.state_dict() == saved  # before the run touches it
    resumed._st(ctx2)
    assert state_of(ctx2).state_dict() == {"actor_calls": 7, "critic_calls": 3, "exported": 5}

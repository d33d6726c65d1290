"""The rule that recognises a critical state in a new rollout (ULTRA leaves it open)."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from guidedrl_ultra import CriticalEntry, CriticalStateTable, UltraConfig
from guidedrl_ultra.state import make_table


def identity(obs):
    return np.asarray(obs, dtype=np.float64).reshape(len(obs), -1)


def entry(features, advice=1, score=1.0, step=0):
    f = np.asarray(features, dtype=np.float64)
    return CriticalEntry(obs=f.astype(np.float32), features=f, taken=0, advice=advice, score=score, step=step)


def seeded_table(rule="nearest", tolerance=0.25, scale=(1.0, 1.0), **kw):
    table = CriticalStateTable(identity, rule=rule, tolerance=tolerance, **kw)
    rng = np.random.default_rng(0)
    table.observe(rng.normal(size=(5000, 2)) * np.asarray(scale))  # std = scale per feature
    return table


def test_nearest_matches_within_tolerance_only():
    table = seeded_table(tolerance=0.25)
    table.add([entry([0.0, 0.0], advice=2), entry([3.0, 3.0], advice=0)])
    probes = np.array([[0.2, -0.2], [0.5, 0.5], [2.9, 3.1], [1.5, 1.5]])
    # RMS distance in std units: 0.2, 0.5, 0.1, 1.5 → only the 1st and 3rd are within 0.25
    np.testing.assert_array_equal(table.match(probes), [0, -1, 1, -1])


def test_standardisation_makes_matching_scale_free():
    small = seeded_table(scale=(1.0, 1.0))
    large = seeded_table(scale=(1.0, 1000.0))
    small.add([entry([0.0, 0.0])])
    large.add([entry([0.0, 0.0])])
    # 0.4 std off in the second feature (RMS 0.28 > 0.25), whatever its units
    assert small.match(np.array([[0.0, 0.4]]))[0] == -1
    assert large.match(np.array([[0.0, 400.0]]))[0] == -1
    # 0.1 std off in both (RMS 0.1)
    assert small.match(np.array([[0.1, 0.1]]))[0] == 0
    assert large.match(np.array([[0.1, 100.0]]))[0] == 0


def test_constant_features_are_ignored():
    table = CriticalStateTable(identity, tolerance=0.25)
    data = np.c_[np.random.default_rng(1).normal(size=1000), np.full(1000, 7.0)]
    table.observe(data)
    table.add([entry([0.0, 7.0])])
    assert table.match(np.array([[0.1, 7.0]]))[0] == 0
    assert table.match(np.array([[0.5, 7.0]]))[0] == -1


def test_exact_rule_rounds_features():
    table = CriticalStateTable(identity, rule="exact", decimals=1)
    table.add([entry([1.0, 2.0], advice=2), entry([1.0, 3.0], advice=0)])
    np.testing.assert_array_equal(table.match(np.array([[1.04, 2.0], [1.0, 3.02], [1.2, 2.0]])), [0, 1, -1])


def test_table_keeps_the_highest_scores():
    table = seeded_table(max_size=2)
    table.add([entry([0, 0], score=0.9), entry([3, 3], score=0.1), entry([-3, 3], score=0.5)])
    assert sorted(e.score for e in table.entries) == [0.5, 0.9]
    assert table.match(np.array([[3.0, 3.0]]))[0] == -1


def test_state_dict_loads_with_weights_only():
    table = seeded_table()
    table.add([entry([0, 0], advice=2), entry([3, 3], advice=None)])
    table.entries[0].ratings = [(2, 0.5), (0, None)]
    buf = io.BytesIO()
    torch.save(table.state_dict(), buf)
    buf.seek(0)
    restored = CriticalStateTable(identity)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    assert [e.advice for e in restored.entries] == [2, None]
    assert restored.entries[0].ratings == [(2, 0.5), (0, None)]
    np.testing.assert_array_equal(restored.match(np.array([[0.1, 0.0], [3.0, 2.9], [9, 9]])), [0, 1, -1])


def test_auto_rule_is_exact_for_discrete_observations(make_ctx):
    from guidedrl.envs import DiscreteActions, EnvAdapter

    class Grid(EnvAdapter):
        env_id = "Grid-v0"

        def make(self, **kw):
            env = gym.make("FrozenLake-v1")
            return env

        def action_vocabulary(self, space):
            return DiscreteActions(["l", "d", "r", "u"])

    assert make_table(make_ctx(adapter=Grid()), UltraConfig()).rule == "exact"
    assert make_table(make_ctx(), UltraConfig()).rule == "nearest"  # Corridor: float Box
    assert make_table(make_ctx(), UltraConfig(match="exact")).rule == "exact"


def test_adapter_features_are_used_when_offered(make_ctx):
    from guidedrl.llm.testing import CorridorAdapter

    class WithFeatures(CorridorAdapter):
        def match_features(self, obs):
            return np.asarray(obs)[:, :1] * 10  # position only, in other units

    table = make_table(make_ctx(adapter=WithFeatures()), UltraConfig())
    np.testing.assert_array_equal(table.feats(np.array([[3.0, 7.0]])), [[30.0]])
    plain = make_table(make_ctx(adapter=WithFeatures()), UltraConfig(features="obs"))
    np.testing.assert_array_equal(plain.feats(np.array([[3.0, 7.0]])), [[3.0, 7.0]])
    with pytest.raises(Exception, match="match_features"):
        make_table(make_ctx(), UltraConfig(features="adapter"))

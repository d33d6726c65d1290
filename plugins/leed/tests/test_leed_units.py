"""LEED's pieces on their own: the weight schedule and mapping, DTW similarity, hostile plans through
DG (scripted LLM, and garbage through the real LLM layer), and the state's checkpoint round trip."""

from __future__ import annotations

import collections
import io
import json
import logging
import types

import numpy as np
import pytest
import torch
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from guidedrl.config import LLMConfig
from guidedrl.llm import LLMClient
from guidedrl_env_traffic.adapter import TrafficAdapter
from guidedrl_leed import demonstrations, optimisation
from guidedrl_leed.config import LeedConfig
from guidedrl_leed.state import LeedState


def test_coefficient_decays_from_10_to_0_1_and_stays():
    cfg = LeedConfig(decay_steps=1000)
    assert optimisation.coefficient(0, cfg) == pytest.approx(10.0)
    assert optimisation.coefficient(500, cfg) == pytest.approx(5.05)
    assert optimisation.coefficient(1000, cfg) == pytest.approx(0.1)
    assert optimisation.coefficient(10**6, cfg) == pytest.approx(0.1)


@pytest.mark.parametrize(("weighting", "s", "f"), [
    ("dissimilarity", 0.0, 1.0), ("dissimilarity", 0.7, 0.3), ("dissimilarity", 1.0, 0.1),
    ("similarity", 0.7, 0.7), ("similarity", 0.0, 0.1), ("constant", 0.3, 1.0),
])
def test_similarity_to_weight_mapping(weighting, s, f):
    assert optimisation.factor(s, LeedConfig(weighting=weighting)) == pytest.approx(f)


def test_dtw_similarity_sees_through_time_warping():
    t = np.linspace(0, 1, 30)
    expert = np.stack([t, 1 - t], axis=1)
    slow = np.stack([np.linspace(0, 1, 45), 1 - np.linspace(0, 1, 45)], axis=1)  # same path, slower
    other = np.stack([1 - t, t], axis=1)  # the opposite path
    assert optimisation.similarity([expert], [expert], 1.0) == pytest.approx(1.0)
    same_path = optimisation.similarity([slow], [expert], 0.1)
    assert same_path > 0.8 > optimisation.similarity([other], [expert], 0.1)
    # each own trajectory takes its most similar expert trajectory
    assert optimisation.similarity([slow], [other, expert], 0.1) == pytest.approx(same_path)
    assert optimisation.similarity([], [expert], 1.0) is None


# -- DG against hostile plans -----------------------------------------------------------------

HOSTILE = [
    "Sure! Here is my plan: drive fast.",                                # garbage string
    {"instructions": [[["MoveTo", ["Intersection_1"]], {"x": [[[]]]}], None]},  # nested junk
    [["MoveTo", "Intersection_99", "Agent_0"], ["Fly", "Intersection_1", "Agent_1"],
     ["MoveTo", "Intersection_1", "Agent_42"], ["MoveTo", 1e300, "Agent_2"]],   # unknown ids, command, huge number
    [["MoveTo", "Intersection_15", "Agent_0"], ["MoveTo", "Intersection_0", "Agent_1"]],  # non-adjacent moves
    [["MoveTo", "Intersection_1", "Agent_0"]] * 100_000,               # a huge list
    12345,
]


class ScriptedLLM:
    """``instructions()`` answers from a list, as a backend without ``validate_plan`` would."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.asked: list[str | None] = []

    def instructions(self, observations, info=None, *, history=None, template=None):
        self.asked.append(history)
        return self.answers.pop(0)


def _ctx(llm, adapter):
    return types.SimpleNamespace(
        adapter=adapter, llm=llm, counters=collections.Counter(), demos=[], env_steps=0,
        config=types.SimpleNamespace(seed=0, llm=types.SimpleNamespace(backend="scripted")),
        make_env=adapter.make, log=lambda name, value: None, require_adapter=lambda name: None,
    )


def test_hostile_plans_are_counted_logged_and_skipped(caplog):
    adapter = TrafficAdapter(4, 4)
    good = adapter.expert.plan  # answered per episode from the real state below
    env = adapter.make()
    cfg = LeedConfig(episodes=len(HOSTILE) + 1)
    answers = list(HOSTILE)
    obs, infos = env.reset(seed=demonstrations.episode_seed(types.SimpleNamespace(config=types.SimpleNamespace(seed=0)), cfg, len(HOSTILE)))
    answers.append(good(adapter.describe(obs, infos).state))
    llm = ScriptedLLM(answers)
    ctx = _ctx(llm, adapter)
    st = LeedState()
    with caplog.at_level(logging.INFO, logger="guidedrl.leed"):
        demos = demonstrations.generate(ctx, cfg, st, name="leed")
    c = ctx.counters
    assert c["leed/plans"] == len(HOSTILE) + 1
    assert c["leed/items_rejected"] >= 2 + 4 + 2 + 1  # nested junk, bad ids, non-adjacent, the list's excess
    assert c["leed/plans_cut"] >= len(HOSTILE)  # nothing sensible drives the hostile episodes home
    assert "not adjacent" in caplog.text and "unknown agent" in caplog.text
    # only the valid plan's episode gave demonstrations (keep = arrived), and it is whole
    assert {d.meta["leed_episode"] for d in demos} == {len(HOSTILE)}
    assert st.best[len(HOSTILE)]["validity"] == 1.0
    assert st.rounds[0]["plans"] == len(HOSTILE) + 1 and 0 < st.rounds[0]["validity"] < 1
    # the feedback for the next round names what failed
    assert "Rejected instructions" in st.feedback[3] and "not adjacent" in st.feedback[3]


def test_garbage_through_the_real_llm_layer_is_a_failed_plan(tmp_path):
    adapter = TrafficAdapter(4, 4)
    answers = ["not json at all", json.dumps({"instructions": [{"command": 1, "parameter": [], "agent": None}]}),
               json.dumps({"instructions": [["MoveTo", "Intersection_99", "Agent_0"]]})] * 3
    model = GenericFakeChatModel(messages=iter([AIMessage(content=a) for a in answers]))
    with LLMClient(model, adapter=adapter, config=LLMConfig(cache="off", retries=2, transient_retries=0), run_dir=tmp_path) as llm:
        ctx = _ctx(llm, adapter)
        st = LeedState()
        demos = demonstrations.generate(ctx, LeedConfig(episodes=2), st, name="leed")
    assert demos == [] and ctx.counters["leed/plans_failed"] == 2
    assert st.rounds[0]["validity"] == 0.0


def test_refinement_keeps_the_better_plan_and_feeds_back(caplog):
    adapter = TrafficAdapter(4, 4)
    cfg = LeedConfig(episodes=1, refine_every=1, max_refinements=2)
    env = adapter.make()
    obs, infos = env.reset(seed=demonstrations.episode_seed(types.SimpleNamespace(config=types.SimpleNamespace(seed=0)), cfg, 0))
    expert = adapter.expert.plan(adapter.describe(obs, infos).state)
    broken = expert[::-1]  # every route reversed: mostly non-adjacent
    llm = ScriptedLLM([broken, expert, broken])
    ctx = _ctx(llm, adapter)
    st = LeedState()
    ctx.demos.extend(demonstrations.generate(ctx, cfg, st, name="leed"))
    first = st.rounds[0]["validity"]
    st.iteration = 1
    assert demonstrations.refine(ctx, cfg, st, name="leed")
    assert "Rejected instructions" in llm.asked[1]  # the second prompt carried the feedback
    assert st.rounds[1]["validity"] == 1.0 > first and st.best[0]["round"] == 1
    kept = list(ctx.demos)
    st.iteration = 2
    assert demonstrations.refine(ctx, cfg, st, name="leed")  # the broken plan again: the better one stays
    assert st.rounds[2]["validity"] < 1.0 and st.rounds[2]["kept_validity"] == 1.0
    assert [len(d) for d in ctx.demos] == [len(d) for d in kept]
    st.iteration = 3
    assert not demonstrations.refine(ctx, cfg, st, name="leed")  # max_refinements reached
    assert ctx.counters["leed/refinements"] == 2 and len(llm.asked) == 3


def test_state_survives_a_weights_only_checkpoint():
    st = LeedState(iteration=7, refinements=2, last_refine_iteration=6, similarity={"agent_0": 0.4}, weight={"agent_0": 3.0})
    st.best[0] = {"validity": 1.0, "team_return": 1.5, "round": 1}
    st.feedback[0] = "Feedback"
    st.rounds.append({"round": 0, "validity": 0.5, "demo_return": float("nan")})
    st.push_trajectory("agent_0", np.ones((5, 21)), -1.0, 4)
    st.gen.manual_seed(3)
    buf = io.BytesIO()
    torch.save(st.state_dict(), buf)
    buf.seek(0)
    back = LeedState()
    back.load_state_dict(torch.load(buf, weights_only=True), 4)
    assert back.state_dict().keys() == st.state_dict().keys()
    assert (back.iteration, back.refinements, back.best, back.feedback) == (7, 2, st.best, st.feedback)
    assert np.array_equal(back.recent["agent_0"][0], st.recent["agent_0"][0])
    assert torch.randint(0, 1000, (5,), generator=back.gen).tolist() == torch.randint(0, 1000, (5,), generator=st.gen).tolist()


def test_a_single_agent_env_is_refused_with_the_fix():
    from guidedrl.errors import ConfigError
    from guidedrl.llm.testing import CorridorAdapter

    ctx = _ctx(ScriptedLLM([]), CorridorAdapter())
    with pytest.raises(ConfigError, match="multi-agent env adapter.*traffic:grid4x4-v0"):
        demonstrations.generate(ctx, LeedConfig(), LeedState(), name="leed")

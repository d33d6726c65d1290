"""Adapter protocols (guidedrl.envs.protocols), the factored vocabulary and the start-up check."""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import pytest

from guidedrl import hookimpl
from guidedrl.config import RunConfig, TrainConfig
from guidedrl.envs import (
    ActionVocabulary,
    Adapter,
    BoxActions,
    Description,
    DiscreteActions,
    EnvAdapter,
    FactoredActions,
    InvalidAction,
    MissingAdapterError,
    MultiAgentEnvAdapter,
    PlainGymAdapter,
    PlanExecutor,
    PlanStep,
    SimResult,
    Simulator,
    check_adapter,
    method_requirements,
)
from guidedrl.envs.factored import MAX_PROMPT_CHARS
from guidedrl.errors import AdapterError, GuidedRLError, PluginError
from guidedrl.llm.testing import CorridorAdapter, TeamCorridorAdapter
from guidedrl.plugins import make_manager

# -- a synthetic ACE-sized vocabulary: 67,018 actions of two kinds ------------------------------------


def grid_actions() -> list[dict]:
    acts = [
        {"substation": sub, "bus_layout": list(layout)}
        for sub in range(33)
        for layout in itertools.product([1, 2], repeat=11)
    ][:66_900]
    acts += [{"line": line, "status": status} for line in range(59) for status in ("on", "off")]
    return acts


@pytest.fixture(scope="module")
def grid() -> FactoredActions:
    return FactoredActions(grid_actions(), field_help={"substation": "substation id", "bus_layout": "bus of each element"})


def test_factored_vocabulary_maps_67k_actions_both_ways(grid):
    acts = grid_actions()
    assert grid.n == len(acts) == 67_018 and len(grid) == grid.n
    for i in np.random.default_rng(0).integers(grid.n, size=500):
        assert grid.to_structured(i) == acts[i]
        assert grid.index_of(acts[i]) == i
    # every spelling of one action is the same action
    assert grid.index_of({"bus_layout": (1,) * 11, "substation": 0.0}) == 0
    assert grid.index_of({"substation": np.int64(0), "bus_layout": np.ones(11, dtype=int)}) == 0
    assert grid.to_json(np.array(66_901)) == {"line": 0, "status": "off"}
    assert 0 <= grid.sample(np.random.default_rng(1)) < grid.n


@pytest.mark.parametrize(
    "answer, expected",
    [(5, 5), ("5", 5), (7.0, 7), ('{"line": 7, "status": "off"}', 66_900 + 15), ({"status": "on", "line": 0}, 66_900)],
)
def test_factored_parse_takes_an_index_or_a_structured_object(grid, answer, expected):
    assert grid.parse(answer) == expected


@pytest.mark.parametrize(
    "answer, fragments",
    [
        ({"substation": 99, "bus_layout": [1] * 11}, ["substation = 99 is not valid", "int 0..32"]),
        ({"substation": 4, "bus_layout": [1, 2, 3]}, ["bus_layout", "list of 11 items", "int 1..2"]),
        ({"line": 7, "status": "broken"}, ['status = "broken"', '"off" | "on"']),
        ({"line": 7}, ["no action has the fields ['line']", "{line, status}", "{substation, bus_layout}"]),
        ({"substation": 32, "bus_layout": [2] * 11}, ["no action combines substation=32", "there are 1364 actions", "bus_layout=[1, 1"]),
        ("hello", ["neither an action index", "JSON object"]),
        (67_018, ["out of range 0..67017"]),
        (True, ["index 0..67017"]),
        ([1, 2], ["index 0..67017"]),
    ],
)
def test_factored_parse_rejects_with_a_reason_an_llm_can_act_on(grid, answer, fragments):
    with pytest.raises(InvalidAction) as err:
        grid.parse(answer)
    for fragment in fragments:
        assert fragment in str(err.value), f"{fragment!r} not in {err.value}"


def test_factored_prompt_shows_structure_not_a_line_per_action_within_its_bound(grid):
    text = grid.prompt_text()
    assert len(text) < 4000 and text.count("\n") < 15
    assert "67018 actions" in text
    assert '"substation": int 0..32' in text and "list of 11 items, each int 1..2" in text
    assert '"status": "off" | "on"' in text and "substation: substation id" in text
    assert '"line": 0' in text  # an example of each kind
    shortlist = list(range(0, 67_000, 100))  # 670 candidates: only max_items are shown
    listed = grid.prompt_text(shortlist=shortlist, max_items=25)
    assert len(listed) <= MAX_PROMPT_CHARS and "- 2400 = " in listed and "645 more candidates" in listed
    assert "- 2500 = " not in listed
    # the bound holds whatever is asked: a long shortlist and many items are cut to max_chars
    huge = grid.prompt_text(shortlist=shortlist, max_items=10_000)
    assert len(huge) <= MAX_PROMPT_CHARS and huge.endswith("[... cut to fit the prompt]")
    assert len(grid.prompt_text(shortlist=shortlist, max_items=10_000, max_chars=1500)) <= 1500


def test_factored_prompt_stays_bounded_with_many_kinds_and_long_values():
    acts = [{f"k{j}": i, "payload": "x" * 500} for j in range(30) for i in range(3)]
    vocab = FactoredActions(acts)
    text = vocab.prompt_text(shortlist=range(90), max_items=90)
    assert len(text) <= MAX_PROMPT_CHARS and "22 more forms" in text


def test_factored_json_schema_offers_an_index_or_each_kind(grid):
    schema = grid.json_schema()
    index, sub, line = schema["anyOf"]
    assert index == {"type": "integer", "minimum": 0, "maximum": 67_017}
    assert sub["required"] == ["substation", "bus_layout"] and sub["additionalProperties"] is False
    assert sub["properties"]["substation"] == {"type": "integer", "minimum": 0, "maximum": 32}
    assert line["properties"]["status"] == {"enum": ["off", "on"]}
    json.dumps(schema)  # plain JSON


def test_factored_from_factors_builds_the_product_and_filters():
    vocab = FactoredActions.from_factors({"line": range(3), "status": ["on", "off"]}, keep=lambda a: a != {"line": 1, "status": "off"})
    assert vocab.n == 5 and vocab.to_structured(1) == {"line": 0, "status": "off"}
    with pytest.raises(InvalidAction, match="no action combines line=1 with status=\"off\""):
        vocab.parse({"line": 1, "status": "off"})
    with pytest.raises(ValueError, match="repeats action 0"):
        FactoredActions([{"a": 1}, {"a": 1.0}])
    with pytest.raises(ValueError, match="at least one"):
        FactoredActions([])


# -- the protocols -------------------------------------------------------------------------------


def test_adapters_and_vocabularies_satisfy_the_protocols():
    from guidedrl_env_factory import FactoryAdapter

    corridor, team, factory = CorridorAdapter(), TeamCorridorAdapter(), FactoryAdapter()
    for adapter in (corridor, team, factory, PlainGymAdapter("CartPole-v1")):
        assert isinstance(adapter, Adapter)
    assert not isinstance(object(), Adapter)
    for vocab in (corridor.vocabulary, BoxActions([0], [1]), FactoredActions([{"a": 1}])):
        assert isinstance(vocab, ActionVocabulary)
    assert isinstance(factory, PlanExecutor) and not isinstance(corridor, PlanExecutor)
    assert isinstance(corridor, Simulator) and corridor.simulate({}, 0) is None  # the default: no simulator


def test_factory_execute_plan_returns_a_plan_step():
    from guidedrl_env_factory import FactoryAdapter

    adapter = FactoryAdapter()
    env = adapter.make()
    obs, info = env.reset(seed=0)
    state = adapter.describe(obs, info).state
    plan = adapter.validate_plan([["work", 0, "agent_0"], ["work", 0, "agent_1"], ["rest", None, "agent_2"]])
    step = adapter.execute_plan(plan, state)
    assert isinstance(step, PlanStep) and set(step.actions) == set(adapter.agents)
    (item, reason), = step.rejected
    assert item["agent"] == "agent_1" and "station 0" in reason
    actions, rejected = step  # unpacks as before
    assert actions is step.actions and rejected is step.rejected
    check_adapter(adapter, {"lcil": ("describe", "plan_executor", "action_vocabulary", "expert")})


def test_sim_result_is_a_small_frozen_record():
    res = SimResult(ok=False, reason="line 4 overloads (rho 1.3)", reward=-1.0, done=False, info={"rho": 1.3})
    assert not res.ok and "overloads" in res.reason
    assert SimResult(ok=True).info == {} and SimResult(ok=True).reward is None


# -- action_vocabulary() with or without the space ---------------------------------------------------


class NoSpaceAdapter(EnvAdapter):
    env_id = "CartPole-v1"
    task = "Balance."

    def describe(self, obs, info=None):
        return Description(text="a cart", state={"x": float(obs[0])})

    def action_vocabulary(self):  # as CONTRIBUTING.md once documented it: no space argument
        return DiscreteActions(["left", "right"])


def test_action_vocabulary_without_the_space_argument_is_supported():
    vocab = NoSpaceAdapter().vocabulary
    assert vocab.names == ["left", "right"] and vocab.parse("right") == 1
    check_adapter(NoSpaceAdapter(), ("describe", "action_vocabulary"))


# -- check_adapter -------------------------------------------------------------------------------


class Broken(EnvAdapter):
    env_id = "CartPole-v1"
    task = "Balance."

    def action_vocabulary(self, space):
        raise KeyError("names")


class BadPlans(MultiAgentEnvAdapter):
    env_id = "team-v0"

    def describe(self, observations, info=None):
        return Description(text="", state={})

    def validate_plan(self, plan):
        return plan

    def execute_plan(self, plan):  # the old, documented-but-never-implemented shape
        return {}


@pytest.mark.parametrize(
    "adapter, needs, fragments",
    [
        (PlainGymAdapter("Acrobot-v1"), ("describe",), ["run needs describe(obs, info)", "PlainGymAdapter('Acrobot-v1')", "plain Gymnasium env"]),
        (Broken(), ("describe",), ["Broken('CartPole-v1') does not override describe()"]),
        (Broken(), ("action_vocabulary",), ["failed to build its action vocabulary: KeyError: 'names'"]),
        (NoSpaceAdapter(), ("expert",), ["has no expert"]),
        (NoSpaceAdapter(), ("simulate",), ["does not implement simulate(state, action)"]),
        (NoSpaceAdapter(), ("plan_executor",), ["has no validate_plan() or execute_plan()"]),
        (BadPlans(), ("plan_executor",), ["must be execute_plan(plan, state) -> PlanStep"]),
        (TeamCorridorAdapter(), ("plan_executor",), ["has no execute_plan()"]),
        (object(), (), ["is not an env adapter"]),
    ],
)
def test_check_adapter_names_the_adapter_the_missing_piece_and_the_docs(adapter, needs, fragments):
    with pytest.raises(AdapterError) as err:
        check_adapter(adapter, needs)
    assert isinstance(err.value, GuidedRLError)
    for fragment in fragments + ["docs/adapters.md"]:
        assert fragment in str(err.value), f"{fragment!r} not in {err.value}"


def test_check_adapter_passes_what_adapters_have():
    check_adapter(CorridorAdapter(), ("describe", "action_vocabulary", "expert"))
    check_adapter(TeamCorridorAdapter(), ("describe", "action_vocabulary", "expert"))
    check_adapter(PlainGymAdapter("CartPole-v1"), ())  # a plain run needs nothing


def test_missing_adapter_error_is_a_guidedrl_error_and_still_a_runtime_error():
    assert issubclass(MissingAdapterError, AdapterError) and issubclass(MissingAdapterError, RuntimeError)
    with pytest.raises(MissingAdapterError, match="does not implement describe"):
        Broken().describe(np.zeros(4))


class NeedsSimulator:
    requires = ("describe", "simulate")

    @hookimpl
    def shape_reward(self, batch):
        return None


class MisspeltNeeds:
    requires = ("simulator",)

    @hookimpl
    def shape_reward(self, batch):
        return None


def test_method_requirements_reads_requires_and_rejects_unknown_names():
    pm = make_manager(["sim"], extra_plugins={"sim": NeedsSimulator()})
    assert method_requirements(pm) == {"sim": ("describe", "simulate")}
    pm = make_manager(["typo"], extra_plugins={"typo": MisspeltNeeds()})
    with pytest.raises(PluginError, match="requires 'simulator'.*Did you mean 'simulate'"):
        method_requirements(pm)


def test_train_refuses_an_adapter_without_what_a_method_requires_before_writing_anything(tmp_path):
    from guidedrl.train import train

    out = tmp_path / "run"
    cfg = RunConfig(env="CartPole-v1", steps=64, out=str(out), methods=("sim",), train=TrainConfig(num_envs=1))
    with pytest.raises(AdapterError, match=r"method 'sim' needs simulate\(state, action\).*does not implement"):
        train(cfg, extra_plugins={"sim": NeedsSimulator()})
    assert not out.exists()


def test_cli_shows_a_missing_capability_as_one_line(tmp_path, capsys):
    from guidedrl.cli import main

    rc = main(["run", "--env", "Acrobot-v1", "--methods", "ultra", "--steps", "64", "--out", str(tmp_path / "r"), "--quiet", "--no-plot"])
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("guidedrl: error:")]
    assert rc == 2 and "Traceback" not in err
    assert "method 'ultra' needs describe(obs, info)" in line and "Acrobot-v1" in line


def test_wrong_env_kwargs_are_a_config_error_not_a_traceback():
    from guidedrl.errors import ConfigError
    from guidedrl.registry import make_adapter

    with pytest.raises(ConfigError, match="'factory:human-machine-v0' could not be made with env_kwargs {'n_agents': 'many'}"):
        make_adapter("factory:human-machine-v0", n_agents="many")


def test_the_cli_knows_a_multi_agent_env_from_its_registration():
    from guidedrl.cli import _multi_agent

    assert _multi_agent("factory:human-machine-v0") and not _multi_agent("CartPole-v1") and not _multi_agent("Acrobot-v1")


@pytest.mark.parametrize("env_id", ["factory:human-machine-v0", "traffic:grid4x4-v0", "mpe2:simple_spread-v3"])
def test_every_planning_adapter_passes_the_plan_executor_check(env_id):
    from guidedrl.registry import ENVS, make_adapter

    if env_id not in ENVS:
        pytest.skip(f"{env_id} is not installed")
    adapter = make_adapter(env_id)
    assert isinstance(adapter, Adapter) and isinstance(adapter, PlanExecutor)
    check_adapter(adapter, {"lcil": ("describe", "plan_executor")})


def test_an_env_plugin_that_fails_to_import_does_not_leave_a_half_filled_registry(make_dist, tmp_path):
    from guidedrl.plugins import reset_registries
    from guidedrl.registry import ENVS

    site = make_dist("guidedrl-env-broken", entry_points={"guidedrl.envs": {"broken": "broken_envs_mod"}},
                     modules={"broken_envs_mod": "raise ImportError('no module named grid2op')\n"})
    with pytest.raises(PluginError, match="broken.*failed to import"):
        ENVS.ids()
    (site / "broken_envs_mod.py").write_text("import guidedrl\n\n@guidedrl.hookimpl\ndef register_envs(register):\n    pass\n")
    sys.modules.pop("broken_envs_mod", None)
    reset_registries()
    assert "CartPole-v1" in ENVS.ids() and "factory:human-machine-v0" in ENVS.ids()
    # without the reset too: the failed load is retried, not remembered as done
    (site / "broken_envs_mod.py").write_text("raise ImportError('again')\n")
    sys.modules.pop("broken_envs_mod", None)
    reset_registries()
    with pytest.raises(PluginError):
        ENVS.ids()
    (site / "broken_envs_mod.py").write_text("import guidedrl\n\n@guidedrl.hookimpl\ndef register_envs(register):\n    pass\n")
    sys.modules.pop("broken_envs_mod", None)
    from guidedrl.plugins import _registry_manager

    _registry_manager.cache_clear()  # only the manager: ENVS itself must know its load failed
    assert "CartPole-v1" in ENVS.ids()

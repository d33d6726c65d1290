"""The plugin manager, entry-point discovery and the env/LLM registries.

Entry points are simulated with real distributions: ``make_dist`` (conftest.py) writes a
``*.dist-info`` directory and modules into a directory on ``sys.path``, where
``importlib.metadata.entry_points()`` finds them like any installed package.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from guidedrl_core_testkit import AlwaysAction, ConstantBonus, NeverAdvises, make_ctx

from guidedrl import hookimpl
from guidedrl.errors import ConfigError, HookError, PluginError
from guidedrl.plugins import discover, make_manager
from guidedrl.train import hooks

METHOD_SRC = """
from guidedrl import hookimpl
import numpy as np

class {cls}:
    @hookimpl
    def shape_reward(self, batch):
        return np.full(len(batch), {bonus})
"""


def method_dist(make_dist, dist, ep_name, module, bonus=1.0, version="1.0"):
    return make_dist(
        dist,
        version,
        entry_points={"guidedrl.methods": {ep_name: f"{module}:Method"}},
        modules={module: METHOD_SRC.format(cls="Method", bonus=bonus)},
    )


def test_installed_method_is_discovered_with_its_distribution(make_dist):
    method_dist(make_dist, "guidedrl-fake-one", "fakeone", "fake_one_mod", version="2.3")
    found = discover("methods")
    assert found["fakeone"].dist == "guidedrl-fake-one"
    assert found["fakeone"].version == "2.3"
    pm = make_manager(["fakeone"])
    assert pm.method_order == ["fakeone"]
    assert type(pm.get_plugin("fakeone")).__module__ == "fake_one_mod"
    assert pm.plugin_info["fakeone"].dist == "guidedrl-fake-one"


def test_unknown_method_suggests_a_close_match_and_the_plugins_command(make_dist):
    method_dist(make_dist, "guidedrl-fake-ultra", "ultra_fake", "fake_ultra_mod")
    with pytest.raises(PluginError) as err:
        make_manager(["ultra_fak"])
    msg = str(err.value)
    assert "'ultra_fak'" in msg
    assert "Did you mean 'ultra_fake'" in msg
    assert "guidedrl plugins" in msg


def test_plugin_that_fails_to_import_names_entry_point_distribution_version_and_cause(make_dist):
    make_dist(
        "guidedrl-broken",
        "0.4.2",
        entry_points={"guidedrl.methods": {"broken": "broken_mod:Method"}},
        modules={"broken_mod": "raise ImportError('needs the frobnicate package')\n"},
    )
    with pytest.raises(PluginError) as err:
        make_manager(["broken"])
    msg = str(err.value)
    for part in ("'broken'", "broken_mod:Method", "guidedrl.methods", "guidedrl-broken", "0.4.2", "ImportError", "frobnicate"):
        assert part in msg, f"{part!r} missing from: {msg}"
    assert isinstance(err.value.__cause__, ImportError)


def test_same_id_from_two_distributions_names_both(make_dist):
    method_dist(make_dist, "guidedrl-alpha", "twin", "twin_alpha", version="1.0")
    method_dist(make_dist, "guidedrl-beta", "twin", "twin_beta", version="2.0")
    with pytest.raises(PluginError) as err:
        discover("methods")
    msg = str(err.value)
    assert "'twin'" in msg and "twice" in msg
    for part in ("guidedrl-alpha 1.0", "guidedrl-beta 2.0", "twin_alpha:Method", "twin_beta:Method", "GUIDEDRL_PLUGINS"):
        assert part in msg
    with pytest.raises(PluginError):
        make_manager(["twin"])


def test_guidedrl_plugins_resolves_a_duplicate_by_distribution_name(make_dist, monkeypatch):
    method_dist(make_dist, "guidedrl-alpha", "twin", "twin_alpha2", bonus=1.0)
    method_dist(make_dist, "guidedrl-beta", "twin", "twin_beta2", bonus=2.0)
    monkeypatch.setenv("GUIDEDRL_PLUGINS", "guidedrl-beta")
    pm = make_manager(["twin"])
    assert type(pm.get_plugin("twin")).__module__ == "twin_beta2"


def test_guidedrl_plugins_restricts_discovery(make_dist, monkeypatch):
    method_dist(make_dist, "guidedrl-keep", "keepme", "keep_mod")
    method_dist(make_dist, "guidedrl-drop", "dropme", "drop_mod")
    assert {"keepme", "dropme"} <= set(discover("methods"))
    monkeypatch.setenv("GUIDEDRL_PLUGINS", "keepme, classic")
    assert set(discover("methods")) == {"keepme"}
    assert set(discover("envs")) == {"classic"}
    with pytest.raises(PluginError, match="unknown method 'dropme'"):
        make_manager(["dropme"])
    assert make_manager(["keepme"]).method_order == ["keepme"]


def test_guidedrl_plugins_can_hide_the_cartpole_adapter(monkeypatch, fresh_registries):
    from guidedrl.envs import PlainGymAdapter
    from guidedrl.registry import make_adapter

    assert not isinstance(make_adapter("CartPole-v1"), PlainGymAdapter)
    monkeypatch.setenv("GUIDEDRL_PLUGINS", "nothing-at-all")
    from guidedrl.plugins import reset_registries

    reset_registries()
    adapter = make_adapter("CartPole-v1")
    assert isinstance(adapter, PlainGymAdapter), "GUIDEDRL_PLUGINS did not keep the classic adapter out"


def test_misspelt_hook_name_is_an_error_with_the_close_match():
    class Typo:
        @hookimpl
        def shape_rewards(self, batch):  # one letter too many
            return None

    with pytest.raises(PluginError) as err, pytest.warns(UserWarning, match="it declares \\['shape_rewards'\\]"):
        make_manager(["typo"], extra_plugins={"typo": Typo()})
    msg = str(err.value)
    assert "shape_rewards" in msg
    assert "Did you mean 'shape_reward'" in msg


def test_unknown_argument_in_an_implementation_is_an_error():
    class BadArg:
        @hookimpl
        def shape_reward(self, batch, rewards):  # 'rewards' is not in the spec
            return None

    with pytest.raises(PluginError) as err:
        make_manager(["bad"], extra_plugins={"bad": BadArg()})
    assert "'bad'" in str(err.value) and "rewards" in str(err.value)


def test_method_without_guidance_hooks_warns():
    class Empty:
        def shape_reward(self, batch):  # not marked with @hookimpl
            return None

    with pytest.warns(UserWarning, match="implements none of the guidance hooks"):
        pm = make_manager(["empty"], extra_plugins={"empty": Empty()})
    assert pm.method_order == ["empty"]


def test_method_with_a_hook_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_manager(["bonus"], extra_plugins={"bonus": ConstantBonus(1.0)})


def test_wrapper_implementations_are_rejected():
    class Wrapper:
        @hookimpl(wrapper=True)
        def shape_reward(self, batch):
            result = yield
            return result

    with pytest.raises(PluginError, match="wrapper"):
        make_manager(["wrap"], extra_plugins={"wrap": Wrapper()})


def test_same_method_twice_is_a_config_error():
    with pytest.raises(ConfigError, match="twice"):
        make_manager(["a", "a"], extra_plugins={"a": ConstantBonus(1.0)})


def test_settings_for_a_method_the_run_does_not_use_are_an_error():
    with pytest.raises(ConfigError, match="ghost"):
        make_manager(["a"], {"ghost": {"x": 1}}, extra_plugins={"a": ConstantBonus(1.0)})


@pytest.mark.parametrize("order", [("first", "second"), ("second", "first")])
def test_hook_refine_action_method_order_decides_firstresult(tmp_path, order):
    plugins = {"first": AlwaysAction(0), "second": AlwaysAction(1)}
    ctx = make_ctx(tmp_path, {name: plugins[name] for name in order})
    assert ctx.methods == list(order)
    obs = np.zeros((3, 4), np.float32)
    advice = hooks.refine_action(ctx, obs=obs, act=np.array([1, 0, 1]), info={}, env_ids=np.arange(3))
    winner = order[0]
    assert advice.source == winner
    assert advice.act.tolist() == [plugins[winner].action] * 3
    assert plugins[order[1]].calls == 0, "firstresult: the later method must not be asked"
    assert ctx.counters[f"{winner}/advised_steps"] == 3
    assert ctx.counters[f"{order[1]}/advised_steps"] == 0


def test_hook_refine_action_none_passes_to_the_next_method(tmp_path):
    NeverAdvises.calls = 0
    ctx = make_ctx(tmp_path, {"quiet": NeverAdvises(), "loud": AlwaysAction(1, envs=(1,))})
    advice = hooks.refine_action(ctx, obs=np.zeros((2, 4)), act=np.array([0, 0]), info={}, env_ids=np.array([0, 1]))
    assert NeverAdvises.calls == 1
    assert advice.source == "loud"
    assert advice.mask.tolist() == [False, True]
    assert ctx.counters["advised_steps"] == 1


def test_hook_refine_action_wrong_mask_length_is_an_error(tmp_path):
    class Bad:
        @hookimpl
        def refine_action(self, act):
            return AlwaysAction(1).refine_action(act=act[:1], env_ids=np.arange(1))

    ctx = make_ctx(tmp_path, {"bad": Bad()})
    with pytest.raises(HookError, match=r"'bad', hook 'refine_action'.*mask has shape \(1,\); it must be \(3,\)"):
        hooks.refine_action(ctx, obs=np.zeros((3, 4)), act=np.zeros(3, int), info={}, env_ids=np.arange(3))


def test_hook_shape_reward_trace_plugins_prints_hook_calls(tmp_path, monkeypatch, capsys):
    from tianshou.data import Batch

    monkeypatch.setenv("GUIDEDRL_TRACE_PLUGINS", "1")
    ctx = make_ctx(tmp_path, {"bonus": ConstantBonus(0.5)})
    assert ctx.pm.trace_hooks
    hooks.shape_reward(ctx, Batch(rew=np.zeros(7)))
    err = capsys.readouterr().err
    assert "guidedrl-trace: shape_reward <- bonus: ndarray[7]" in err


def test_trace_is_off_by_default(tmp_path, monkeypatch, capsys):
    from tianshou.data import Batch

    monkeypatch.delenv("GUIDEDRL_TRACE_PLUGINS", raising=False)
    ctx = make_ctx(tmp_path, {"bonus": ConstantBonus(0.5)})
    hooks.shape_reward(ctx, Batch(rew=np.zeros(7)))
    assert "guidedrl-trace" not in capsys.readouterr().err


ENV_SRC = '''
from guidedrl import hookimpl
from guidedrl.envs import PlainGymAdapter


def make_fake(**kwargs):
    """A fake CartPole for tests."""
    return PlainGymAdapter("CartPole-v1", **kwargs)


@hookimpl
def register_envs(register):
    register("{env_id}", make_fake)
'''

LLM_SRC = '''
from guidedrl import hookimpl


def make_echo(*, adapter=None, **options):
    """An echo backend for tests."""
    return ("echo", adapter, options)


@hookimpl
def register_llms(register):
    register("{name}", make_echo)
'''


def test_hook_register_envs_from_an_entry_point(make_dist):
    from guidedrl.registry import ENVS, make_adapter

    make_dist(
        "guidedrl-env-fake",
        "0.9",
        entry_points={"guidedrl.envs": {"fakeenvs": "fake_envs_mod"}},
        modules={"fake_envs_mod": ENV_SRC.format(env_id="fake:Cart-v0")},
    )
    assert "fake:Cart-v0" in ENVS.ids()
    entry = ENVS.get("fake:Cart-v0")
    assert entry.source == "envs:fakeenvs"
    assert entry.summary == "A fake CartPole for tests."
    adapter = make_adapter("fake:Cart-v0", max_episode_steps=7)
    assert adapter.make_kwargs == {"max_episode_steps": 7}
    with pytest.raises(PluginError, match="Did you mean 'fake:Cart-v0'"):
        make_adapter("fake:Cart-v1")


def test_hook_register_envs_same_id_from_two_plugins_names_both(make_dist):
    from guidedrl.registry import ENVS

    for dist, mod in (("guidedrl-env-one", "env_one_mod"), ("guidedrl-env-two", "env_two_mod")):
        make_dist(dist, "1.0", entry_points={"guidedrl.envs": {mod: mod}}, modules={mod: ENV_SRC.format(env_id="Dup-v0")})
    with pytest.raises(PluginError) as err:
        ENVS.ids()
    assert "envs:env_one_mod" in str(err.value) and "envs:env_two_mod" in str(err.value)


def test_hook_register_llms_from_an_entry_point(make_dist):
    from guidedrl.registry import LLMS, make_llm

    make_dist(
        "guidedrl-llm-echo",
        "0.1",
        entry_points={"guidedrl.llms": {"echo": "echo_llm_mod"}},
        modules={"echo_llm_mod": LLM_SRC.format(name="echo")},
    )
    assert "echo" in LLMS.ids()
    kind, adapter, options = make_llm("echo:tiny-model", adapter="ADAPTER", temperature=0)
    assert (kind, adapter) == ("echo", "ADAPTER")
    assert options == {"model": "tiny-model", "temperature": 0}
    with pytest.raises(PluginError, match="Did you mean 'echo'"):
        make_llm("ecko")


def test_plugins_json_lists_installed_methods_envs_and_llms(make_dist, capsys):
    from guidedrl.cli import main

    method_dist(make_dist, "guidedrl-listed", "listed", "listed_mod", version="3.1")
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = [m for m in rows["methods"] if m["id"] == "listed"]
    assert listed == [
        {"id": "listed", "distribution": "guidedrl-listed", "version": "3.1", "entry_point": "listed_mod:Method", "hooks": ["shape_reward"]}
    ]
    cartpole = [e for e in rows["envs"] if e["id"] == "CartPole-v1"]
    assert cartpole and cartpole[0]["distribution"] == "guidedrl-env-classic"

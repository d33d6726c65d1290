"""Config edges: a docstring on every field, method settings type-checked like the core's, method
defaults saved in config.toml (and ``--resume`` still matching), and the notice for ``steps`` that
is not a whole number of collections."""

from __future__ import annotations

import json
import tomllib

import attrs
import pytest
from guidedrl_core_testkit import tiny_ppo

from guidedrl import hookimpl
from guidedrl.config import SECTIONS, RunConfig, field_docs, from_dict, steps_notice
from guidedrl.errors import ConfigError
from guidedrl.plugins import make_manager, method_settings

# -- docstrings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [*SECTIONS.values(), RunConfig], ids=lambda c: c.__name__)
def test_every_config_field_has_a_docstring(cls):
    missing = [name for name, doc in field_docs(cls).items() if not doc.strip()]
    assert not missing, f"{cls.__name__} fields without a docstring: {missing} (README promises one per field)"


def test_field_docs_reads_the_string_under_each_field():
    @attrs.frozen(kw_only=True)
    class Example:
        documented: int = 1
        """What it does."""
        bare: float = 2.0

    assert field_docs(Example) == {"documented": "What it does.", "bare": ""}
    assert field_docs(SECTIONS["ppo"])["eps_clip"] == "Clip range of the probability ratio."


def test_method_plugins_document_every_setting():
    from guidedrl_lcil import LCIL
    from guidedrl_ultra import Ultra

    for cls in (Ultra.Config, LCIL.Config):
        missing = [name for name, doc in field_docs(cls).items() if not doc.strip()]
        assert not missing, f"{cls.__qualname__}: {missing}"


# -- method settings ------------------------------------------------------------------------------


class Typed:
    @attrs.frozen(kw_only=True)
    class Config:
        flag: bool = False
        """A switch."""
        count: int = 3
        """A count."""
        rate: float = 0.5
        """A rate."""
        name: str = "a"
        """A name."""
        sizes: tuple[int, ...] = (8, 8)
        """Layer sizes."""
        limit: float | None = None
        """An optional limit."""

    def __init__(self, config: Typed.Config) -> None:
        self.config = config

    @hookimpl
    def update_policy(self, ctx, batch, algorithm):
        ctx.counters["typed/updates"] += 1
        return None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"flag": "abc"}, "typed.flag must be true or false, got 'abc'"),
        ({"count": 1.5}, "typed.count must be an integer, got 1.5"),
        ({"count": "many"}, "typed.count must be an integer, got 'many'"),
        ({"rate": "fast"}, "typed.rate must be a number, got 'fast'"),
        ({"rate": True}, "typed.rate must be a number, got True"),
        ({"name": 3}, "typed.name must be a string, got 3"),
        ({"sizes": 8}, "typed.sizes must be a list, got 8"),
        ({"limit": "none"}, "typed.limit must be a number, got 'none'"),
    ],
)
def test_a_method_setting_of_the_wrong_type_is_a_config_error_naming_it(settings, message):
    with pytest.raises(ConfigError) as err:
        make_manager(["typed"], {"typed": settings}, extra_plugins={"typed": Typed})
    assert message in str(err.value)


def test_method_settings_are_converted_like_the_cores():
    pm = make_manager(["typed"], {"typed": {"count": 2.0, "rate": 1, "sizes": [4, 4], "limit": 3}}, extra_plugins={"typed": Typed})
    cfg = pm.get_plugin("typed").config
    assert (cfg.count, cfg.rate, cfg.sizes, cfg.limit) == (2, 1.0, (4, 4), 3.0)
    assert isinstance(cfg.count, int) and isinstance(cfg.rate, float)


def test_cli_set_of_a_wrong_type_is_one_line(tmp_path, capsys):
    from guidedrl.cli import main

    rc = main(["run", "--env", "CartPole-v1", "--methods", "ultra", "--set", "ultra.episodes=abc", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "ultra.episodes must be an integer, got 'abc'" in err


def test_method_settings_hold_every_default():
    pm = make_manager(["typed"], {"typed": {"count": 7}}, extra_plugins={"typed": Typed})
    assert method_settings(pm, {"typed": {"count": 7}}) == {
        "typed": {"flag": False, "count": 7, "rate": 0.5, "name": "a", "sizes": [8, 8], "limit": None}
    }


@pytest.mark.slow
def test_config_toml_saves_method_defaults_and_resume_still_matches(tmp_path):
    from guidedrl.train import train

    out = tmp_path / "run"
    data = tiny_ppo(out, steps=512, methods=["typed"], typed={"count": 7}, train={"epoch_steps": 512}, ppo={"steps_per_collect": 256})
    first = train(from_dict(data), extra_plugins={"typed": Typed})
    saved = tomllib.loads((out / "config.toml").read_text())
    assert saved["typed"] == {"flag": False, "count": 7, "rate": 0.5, "name": "a", "sizes": [8, 8]}  # None is not written
    assert first.summary["method_counters"]["typed"]["updates"] > 0
    # the same user config (only its override) resumes: both sides hold the defaults
    more = from_dict({**data, "steps": 1024})
    resumed = train(more, extra_plugins={"typed": Typed}, resume=True)
    assert resumed.summary["env_steps"] == 1024
    # and the saved file resumes too
    again = from_dict({**tomllib.loads((out / "config.toml").read_text()), "steps": 1536})
    assert train(again, extra_plugins={"typed": Typed}, resume=True).summary["env_steps"] == 1536

    # a plugin whose default changed since: the resumed run would differ, so it is refused
    class Changed(Typed):
        @attrs.frozen(kw_only=True)
        class Config(Typed.Config):
            rate: float = 0.9
            """A rate (new default)."""

    with pytest.raises(ConfigError, match="differs from the one saved"):
        train(from_dict({**data, "steps": 2048}), extra_plugins={"typed": Changed}, resume=True)


# -- steps that are not a whole number of collections ----------------------------------------------


@pytest.mark.parametrize(
    "data, multi_agent, end",
    [
        ({"steps": 1000, "ppo": {"steps_per_collect": 256}, "train": {"num_envs": 8}}, False, 1024),
        ({"steps": 1024, "ppo": {"steps_per_collect": 256}, "train": {"num_envs": 8}}, False, None),
        ({"steps": 1000, "ppo": {"steps_per_collect": 100}, "train": {"num_envs": 8}}, False, 1040),
        ({"algo": "dqn", "steps": 500, "dqn": {"steps_per_collect": 16, "start_steps": 100}, "train": {"num_envs": 3}}, False, 516),
        ({"algo": "dqn", "steps": 50, "dqn": {"steps_per_collect": 16, "start_steps": 100}, "train": {"num_envs": 4}}, False, 100),
        ({"steps": 1000, "marl": {"steps_per_collect": 100}, "train": {"num_envs": 8}}, True, 1056),
        ({"steps": 960, "marl": {"steps_per_collect": 100}, "train": {"num_envs": 8}}, True, None),
    ],
)
def test_steps_notice_says_where_the_run_stops(data, multi_agent, end):
    notice = steps_notice(from_dict({"env": "CartPole-v1", "preset": "none", **data}), multi_agent=multi_agent)
    if end is None:
        assert notice is None
    else:
        assert notice is not None and notice.endswith(f"the run will stop at {end} env steps")
        assert f"steps={data['steps']} is not a multiple" in notice


def test_cli_warns_in_one_line_and_the_run_stops_where_it_said(tmp_path, capsys):
    from guidedrl.cli import main

    out = tmp_path / "run"
    rc = main([
        "run", "--env", "CartPole-v1", "--preset", "none", "--steps", "1000", "--out", str(out), "--quiet", "--no-plot",
        "--set", "ppo.steps_per_collect=256", "--set", "ppo.repeat=1", "--set", "train.num_envs=8",
        "--set", "train.test_episodes=1", "--set", "train.num_test_envs=1",
    ])
    assert rc == 0
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "steps=1000" in ln]
    assert line.startswith("guidedrl: warning: steps=1000 is not a multiple of the 256 env steps collected at a time")
    assert line.endswith("the run will stop at 1024 env steps")
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 1024

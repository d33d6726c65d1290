"""The CLI's help and listings stay fast: they import neither torch, Tianshou nor LLM client libraries.

Each check runs in a fresh interpreter (the test process itself has torch loaded long ago) and reads
``sys.modules`` after the command finished.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "tianshou", "langchain", "langchain_core", "langchain_openai", "openai", "llama_cpp")

PROBE = """
import contextlib, io, json, sys
argv = json.loads(sys.argv[1])
out = io.StringIO()
code = 0
with contextlib.redirect_stdout(out):
    if argv is None:
        import guidedrl
    else:
        from guidedrl.cli import main
        try:
            code = main(argv)
        except SystemExit as exc:  # --help exits through argparse
            code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"code": code, "heavy": heavy, "out": out.getvalue()}))
"""


def _probe(argv: list[str] | None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_guidedrl_does_not_import_torch_yet_the_hook_types_still_load():
    assert _probe(None)["heavy"] == []
    import guidedrl
    from guidedrl.types import Episode

    assert guidedrl.Episode is Episode and "Episode" in guidedrl.__all__
    with pytest.raises(AttributeError, match="no attribute 'Epsiode'"):
        guidedrl.Epsiode  # noqa: B018 - the attribute access is the test


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["presets"]], ids=" ".join)
def test_help_and_presets_do_not_import_torch_tianshou_or_llm_clients(argv):
    result = _probe(argv)
    assert result["code"] == 0
    assert result["heavy"] == [], f"`guidedrl {' '.join(argv)}` imported {result['heavy']}"
    assert "guidedrl" in result["out"] or "preset" in result["out"]


@pytest.mark.slow
def test_plugins_listing_imports_no_backend_once_listed(tmp_path, monkeypatch):
    """The first listing imports every plugin (that is how their registrations are read); later ones,
    while no plugin changed, read the cached listing and import none of torch, Tianshou or LLM clients."""
    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(tmp_path / "cache"))
    first = _probe(["plugins", "--json"])
    again = _probe(["plugins", "--json"])
    envs = _probe(["envs", "--json"])
    assert first["code"] == again["code"] == envs["code"] == 0
    assert json.loads(again["out"]) == json.loads(first["out"])
    assert json.loads(envs["out"]) == json.loads(first["out"])["envs"]
    assert again["heavy"] == [] and envs["heavy"] == [], (again["heavy"], envs["heavy"])


METHOD_SRC = """
from guidedrl import hookimpl

class Method:
    @hookimpl
    def {hook}(self):
        return None
"""


def test_plugins_listing_is_recomputed_when_a_plugin_file_changes(make_dist, tmp_path, monkeypatch, capsys):
    from guidedrl.cli import main

    monkeypatch.setenv("GUIDEDRL_CACHE_DIR", str(tmp_path / "cache"))
    site = make_dist("guidedrl-cached", "1.0", entry_points={"guidedrl.methods": {"cached": "cached_mod:Method"}},
                     modules={"cached_mod": METHOD_SRC.format(hook="shape_reward")})

    def hooks() -> list[str]:
        assert main(["plugins", "--json"]) == 0
        (row,) = [r for r in json.loads(capsys.readouterr().out)["methods"] if r["id"] == "cached"]
        return row["hooks"]

    assert hooks() == ["shape_reward"]
    assert (tmp_path / "cache" / "plugins.json").exists()
    (site / "cached_mod.py").write_text(METHOD_SRC.format(hook="refine_action") + "\n# edited\n")
    sys.modules.pop("cached_mod", None)
    assert hooks() == ["refine_action"], "a stale listing was served after the plugin changed"

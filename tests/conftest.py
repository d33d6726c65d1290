"""Shared fixtures of the core's tests.

- ``tests/fixtures`` is put on ``sys.path`` so test files can ``import guidedrl_core_testkit`` (test
  plugins and helpers; pytest runs with ``--import-mode=importlib``, where test files cannot import
  each other).
- Every test named ``test_hook_<hook>...`` must actually run ``<hook>`` through the core's hook
  dispatch; the autouse fixture below fails it otherwise (the "every hook has a test" meta-test in
  ``test_core_hook_contract.py`` relies on it).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

from guidedrl import hookspecs  # noqa: E402

HOOK_NAMES = sorted(
    (name for name, obj in vars(hookspecs).items() if hasattr(obj, f"{hookspecs.PROJECT}_spec")),
    key=len,
    reverse=True,
)


def hook_named_by_test(test_name: str) -> str | None:
    """``test_hook_refine_action_order`` → ``refine_action`` (longest hook name that fits)."""
    if not test_name.startswith("test_hook_"):
        return None
    rest = test_name[len("test_hook_") :].split("[")[0]
    for hook in HOOK_NAMES:
        if rest == hook or rest.startswith(hook + "_"):
            return hook
    return None


@pytest.fixture(autouse=True)
def _hook_tests_run_their_hook(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    hook = hook_named_by_test(request.node.name)
    if hook is None:
        yield
        return
    from guidedrl import registry
    from guidedrl.train import hooks as core_hooks

    ran: set[str] = set()
    original = core_hooks._results_with_names

    def spy(pm, hook_name, **kwargs):
        if getattr(pm.hook, hook_name).get_hookimpls():
            ran.add(hook_name)
        return original(pm, hook_name, **kwargs)

    original_add = registry.Registry.add

    def spy_add(self, id, factory, *, source="user", summary=""):
        if source != "user":  # called from a register_* hook implementation
            ran.add(self.hook)
        return original_add(self, id, factory, source=source, summary=summary)

    monkeypatch.setattr(core_hooks, "_results_with_names", spy)
    monkeypatch.setattr(registry.Registry, "add", spy_add)
    yield
    if hook not in ran:
        pytest.fail(f"{request.node.name} is named after hook {hook!r} but never ran it through the core")


@pytest.fixture
def fresh_registries():
    """Forget env/LLM registrations before and after the test (for tests that change sys.path)."""
    from guidedrl.plugins import reset_registries

    reset_registries()
    yield
    reset_registries()


@pytest.fixture
def make_dist(tmp_path, monkeypatch, fresh_registries):
    """Install a fake distribution (``*.dist-info`` + modules) into a directory on ``sys.path``.

    ``make_dist(name, version, entry_points={group: {ep_name: value}}, modules={mod: source})``
    returns the directory; ``importlib.metadata.entry_points()`` finds the entry points at once.
    """
    from guidedrl_core_testkit import write_dist

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    written_modules: list[str] = []

    def make(name, version="1.0", entry_points=None, modules=None):
        write_dist(site, name, version, entry_points or {}, modules or {})
        written_modules.extend(modules or {})
        importlib.invalidate_caches()
        return site

    yield make
    for mod in written_modules:
        sys.modules.pop(mod, None)


@pytest.fixture(scope="session")
def dummy_site(tmp_path_factory) -> Path:
    """``tests/fixtures/dummy_plugin`` installed with pip into a target directory (once per session).

    The project is copied first so that the build leaves nothing in the source tree.
    """
    work = tmp_path_factory.mktemp("dummy_plugin")
    src = work / "src"
    shutil.copytree(FIXTURES / "dummy_plugin", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--target", str(target), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"pip install of the dummy plugin failed:\n{proc.stdout}\n{proc.stderr}"
    return target


@pytest.fixture
def dummy_installed(dummy_site, monkeypatch, fresh_registries) -> Path:
    """The dummy plugin's target directory on ``sys.path`` for this test only."""
    monkeypatch.syspath_prepend(str(dummy_site))
    importlib.invalidate_caches()
    yield dummy_site
    sys.modules.pop("guidedrl_dummy", None)


@pytest.fixture(scope="session")
def guidedrl_script() -> Path:
    """The ``guidedrl`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "guidedrl"
    if not script.exists():
        pytest.skip(f"no guidedrl console script next to {sys.executable}")
    return script

"""Meta-tests that keep the hook contract honest (datasette style).

- every hookspec has a ``## <name>`` heading in ``docs/hooks.md`` showing its exact signature;
- every hook has a test named ``test_hook_<name>...`` (and ``conftest.py`` fails such a test unless
  it really runs that hook through the core);
- the specs themselves follow the project's rules (typed, documented, firstresult only where
  DESIGN.md says so).
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from guidedrl import hookspecs

TESTS = Path(__file__).resolve().parent
DOCS = TESTS.parent / "docs" / "hooks.md"

SPECS = {
    name: obj for name, obj in vars(hookspecs).items() if hasattr(obj, f"{hookspecs.PROJECT}_spec")
}


def _norm(annotation: str) -> str:
    return ast.unparse(ast.parse(annotation, mode="eval"))


def _doc_sections() -> dict[str, str]:
    text = DOCS.read_text()
    parts = re.split(r"^## +(.+?) *$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _documented_signature(section: str, name: str) -> tuple[ast.FunctionDef, str]:
    block = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert block, f"docs/hooks.md: section {name!r} has no ```python block with the signature"
    code = block.group(1).strip()
    tree = ast.parse(code + ": ...")
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert funcs and funcs[0].name == name, f"docs/hooks.md: the signature block of {name!r} defines {ast.dump(tree)[:80]}"
    return funcs[0], code


def test_specs_are_the_five_guidance_hooks_and_two_registration_hooks():
    assert set(SPECS) == set(hookspecs.GUIDANCE_HOOKS) | {"register_envs", "register_llms"}
    assert len(hookspecs.GUIDANCE_HOOKS) == 5


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_documented_with_its_signature(name):
    sections = _doc_sections()
    assert name in sections, f"docs/hooks.md has no '## {name}' heading"
    func, code = _documented_signature(sections[name], name)
    sig = inspect.signature(SPECS[name])
    documented = [(a.arg, _norm(ast.unparse(a.annotation)) if a.annotation else None) for a in func.args.args]
    actual = [(p.name, _norm(p.annotation) if p.annotation is not inspect.Parameter.empty else None) for p in sig.parameters.values()]
    assert documented == actual, f"docs/hooks.md shows {name}{documented}, the spec is {name}{sig}"
    assert func.returns is not None and _norm(ast.unparse(func.returns)) == _norm(sig.return_annotation)
    firstresult = getattr(SPECS[name], f"{hookspecs.PROJECT}_spec")["firstresult"]
    assert ("firstresult=True" in code) == firstresult, f"docs/hooks.md: {name} firstresult marker is wrong"


def test_docs_have_no_heading_for_a_hook_that_does_not_exist():
    hook_like = {h for h in _doc_sections() if re.fullmatch(r"[a-z_]+", h)}
    assert hook_like <= set(SPECS), f"docs/hooks.md documents unknown hooks: {sorted(hook_like - set(SPECS))}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_has_a_test(name):
    tests = []
    for path in TESTS.glob("test_core_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and re.fullmatch(rf"test_hook_{name}(_\w+)?", node.name):
                tests.append(f"{path.name}::{node.name}")
    assert tests, f"no test named test_hook_{name}... in tests/test_core_*.py"


def test_conftest_maps_test_names_to_hooks():
    # The guard in conftest.py decides which hook a test must run from its name.
    import importlib.util

    spec = importlib.util.spec_from_file_location("_guidedrl_conftest_probe", TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.hook_named_by_test("test_hook_refine_action_order[x]") == "refine_action"
    assert module.hook_named_by_test("test_hook_register_envs") == "register_envs"
    assert module.hook_named_by_test("test_hook_shape_rewardx") is None
    assert module.hook_named_by_test("test_config_round_trip") is None


@pytest.mark.parametrize("name", sorted(SPECS))
def test_specs_are_typed_and_documented(name):
    spec = SPECS[name]
    sig = inspect.signature(spec)
    assert sig.return_annotation is not inspect.Signature.empty
    for param in sig.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{name}({param.name}) has no type"
        assert param.default is inspect.Parameter.empty, f"{name}({param.name}): specs take no defaults"
    doc = inspect.getdoc(spec) or ""
    assert doc, f"{name} has no docstring"
    if name in hookspecs.GUIDANCE_HOOKS:
        for param in sig.parameters:
            assert f":param {param}:" in doc, f"{name}'s docstring does not describe {param!r}"


def test_only_refine_action_is_firstresult():
    first = {n for n, s in SPECS.items() if getattr(s, f"{hookspecs.PROJECT}_spec")["firstresult"]}
    assert first == {"refine_action"}
    assert "Stops at first non-None result" in inspect.getdoc(SPECS["refine_action"])

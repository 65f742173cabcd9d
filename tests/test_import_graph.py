"""The recipe sits below the axes: importing it loads no axis, objective or evaluation module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

AXIS_PACKAGES = ("ftatlas.methods", "ftatlas.objectives", "ftatlas.context", "ftatlas.evaluate", "ftatlas.models",
                 "ftatlas.data", "ftatlas.resolve")
# the schema of a datasets source (DataSpec.train may be one) and its error type: plain pydantic, no axis, no I/O
SCHEMA_MODULES = ("ftatlas.data", "ftatlas.data.sources", "ftatlas.data.errors")


def test_importing_the_recipe_imports_no_axis_module():
    code = ("import sys, json, ftatlas.recipe; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('ftatlas'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "ftatlas.recipe" in loaded
    assert [m for m in loaded if m.startswith(AXIS_PACKAGES) and m not in SCHEMA_MODULES] == []


def test_resolving_gives_each_axis_class_and_params(tiny_model_dir, tmp_path):
    from ftatlas.context import CONTEXTS
    from ftatlas.methods import METHODS
    from ftatlas.objectives import OBJECTIVES
    from ftatlas.recipe import RecipeError, parse_recipe
    from ftatlas.resolve import build_recipe, resolve

    data = {"model": {"name": str(tiny_model_dir)}, "data": {"builtin": "contacts"}, "method": {"name": "lora", "r": 4}}
    parsed = parse_recipe(data)
    with pytest.raises(RecipeError, match="not resolved"):  # an unresolved recipe hands out no params
        parsed.method_params()
    r = resolve(parsed)
    assert r.axes.method.entry is METHODS.get("lora") and r.method_params().r == 4
    assert r.axes.objective.entry is OBJECTIVES.get("sft") and r.axes.context.entry is CONTEXTS.get("zero_shot")
    bad = {**data, "method": {"name": "lora", "rank": 4}, "objective": "nope"}
    with pytest.raises(RecipeError) as err:
        build_recipe(bad, source="x.yaml")
    assert str(err.value).startswith("x.yaml: invalid recipe\n")
    assert "method.rank: unknown key" in str(err.value) and "objective: unknown objective 'nope'" in str(err.value)

"""Step two of recipe validation: each axis' name -> its registered class, its block -> that class' ``Params``,
then the cross-axis checks; the result is kept on the recipe (``Recipe.axes``) for everything downstream.

``build_recipe`` / ``load_recipe`` are the entry points: parse (ftatlas.recipe) then resolve (here). This module
sits above the axes; ``ftatlas.recipe`` sits below them, so the import graph has no cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ftatlas.context import CONTEXTS
from ftatlas.methods import METHODS
from ftatlas.objectives import OBJECTIVES
from ftatlas.recipe import (
    AxisSpec,
    Recipe,
    RecipeError,
    ResolvedAxes,
    ResolvedAxis,
    format_errors,
    parse_recipe,
    read_recipe_file,
    recipe_data,
)
from ftatlas.registry import Registry, UnknownNameError

REGISTRIES: dict[str, Registry] = {"method": METHODS, "objective": OBJECTIVES, "context": CONTEXTS}


def _axis(axis: str, spec: AxisSpec) -> ResolvedAxis:
    try:
        entry = REGISTRIES[axis].get(spec.name)
    except UnknownNameError as e:
        raise ValueError(f"{axis}: {e}") from None
    try:
        return ResolvedAxis(entry, entry.Params(**spec.params()))
    except ValidationError as e:
        raise ValueError(f"{axis} {spec.name!r}: {format_errors(e, prefix=axis, root=entry.Params)}") from None


def resolve(recipe: Recipe, source: str = "recipe") -> Recipe:
    """The same recipe with ``axes`` set; a RecipeError naming each bad field, or the combination that cannot run."""
    problems, found = [], {}
    for axis in REGISTRIES:
        try:
            found[axis] = _axis(axis, getattr(recipe, axis))
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise RecipeError(f"{source}: invalid recipe\n" + "\n".join(problems))
    recipe._axes = ResolvedAxes(**found)
    try:  # combinations a method or objective cannot support stop here, before any model loads
        found["method"].entry().check_recipe(found["method"].params, recipe)
        found["objective"].entry().check_recipe(found["objective"].params, recipe)
    except ValueError as e:
        recipe._axes = None
        raise RecipeError(f"{source}: invalid recipe\n{e}") from None
    return recipe


def _axis_problems(merged: dict[str, Any]) -> list[str]:
    """The axis errors of a mapping whose structure is also wrong, so one message lists both."""
    problems = []
    for axis in REGISTRIES:
        block = merged.get(axis)
        if not isinstance(block, dict) or not isinstance(block.get("name"), str):
            continue  # the structural errors already name it
        try:
            _axis(axis, AxisSpec(**block))
        except ValueError as e:
            problems.append(str(e))
    return problems


def build_recipe(data: dict[str, Any], overrides: list[str] | None = None, source: str = "recipe") -> Recipe:
    """A dict (plus ``key=value`` overrides) -> a validated recipe with its axes resolved."""
    try:
        recipe = parse_recipe(data, overrides, source)
    except RecipeError as e:
        try:
            more = _axis_problems(recipe_data(data, overrides))
        except RecipeError:
            more = []
        if more:
            raise RecipeError("\n".join([str(e), *more])) from None
        raise
    return resolve(recipe, source)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """A YAML recipe file (plus overrides) -> a validated recipe with its axes resolved."""
    return build_recipe(read_recipe_file(path), overrides, source=str(path))

"""The launch form: its fields come from the recipe's pydantic models and the axis registries, and its errors
are the CLI's own validation messages, split per field so the page can show each next to its input."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from ftatlas.recipe import Recipe, RecipeError, build_recipe

SECTIONS = ("model", "data", "train", "eval", "output")  # the recipe's fixed blocks, in form order
AXES = ("method", "objective", "context")


def _axis_registries() -> dict[str, Any]:
    from ftatlas.context import CONTEXTS
    from ftatlas.methods import METHODS
    from ftatlas.objectives import OBJECTIVES

    return {"method": METHODS, "objective": OBJECTIVES, "context": CONTEXTS}


def _section_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def form_schema() -> dict[str, Any]:
    """JSON schemas for every fixed block, and for each axis every registered name with its Params schema."""
    fields = Recipe.model_fields
    sections = {name: _section_schema(fields[name].annotation) for name in SECTIONS}  # type: ignore[arg-type]
    axes = {}
    for axis, registry in _axis_registries().items():
        axes[axis] = {name: _section_schema(registry.get(name).Params) for name in registry.names()}
    defaults = {"method": "lora", "objective": "sft", "context": "zero_shot"}
    return {"sections": sections, "axes": axes, "axis_defaults": defaults}


# "train.lr: Input should be ..." or "method 'lora': method.r: Input should be ..."
_PATH = re.compile(r"^(?:(?:method|objective|context) '[^']*': )?([A-Za-z_][\w]*(?:\.[\w]+)*): (.*)$")


def field_errors(message: str) -> dict[str, list[str]]:
    """``RecipeError`` text (one problem per line, after the header) -> {field path: [messages]}; lines that
    name no field go under ``""``."""
    out: dict[str, list[str]] = {}
    for line in message.splitlines()[1:] or message.splitlines():
        line = line.strip()
        if not line:
            continue
        m = _PATH.match(line)
        key, text = (m.group(1), m.group(2)) if m else ("", line)
        out.setdefault(key, []).append(text)
    return out


def clean(data: dict[str, Any]) -> dict[str, Any]:
    """Drop the empty strings and nulls an HTML form sends for fields left blank (the schema default applies)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            v = clean(v)
        if v is None or v == "":
            continue
        out[k] = v
    return out


def validate(data: dict[str, Any]) -> tuple[Recipe | None, dict[str, list[str]]]:
    """Validate a form's recipe dict exactly as ``ftatlas train`` would; errors keyed by field path."""
    try:
        return build_recipe(clean(data), source="form"), {}
    except RecipeError as e:
        return None, field_errors(str(e))

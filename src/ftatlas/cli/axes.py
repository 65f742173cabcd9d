"""The axes and recipes: methods list/memory, context list, config validate/schema."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ftatlas.cli.common import USER_ERRORS, fail, group, out

methods_app = group("methods", "The method axis (what learns).")
context_app = group("context", "The context axis (what the model sees at inference).")
config_app = group("config", "Recipes: validate and show the schema.")


@methods_app.command("list")
def methods_list() -> None:
    """Every registered method with its parameters (generated from the registry)."""
    from ftatlas.methods import METHODS

    _print_registry(METHODS, lambda m: m.declared())


@context_app.command("list")
def context_list() -> None:
    """Every context mode with its parameters (generated from the registry)."""
    from ftatlas.context import CONTEXTS

    _print_registry(CONTEXTS)


def _print_registry(registry, declared: Callable[[Any], list[str]] = lambda _: []) -> None:
    for name in registry:
        m = registry.get(name)
        fields = ", ".join(f"{k}=<required>" if f.is_required() else f"{k}={f.get_default(call_default_factory=True)!r}"
                           for k, f in m.Params.model_fields.items())
        says = ", ".join(declared(m))
        out.print(f"[bold]{name}[/]: {m.summary}" + (f"\n    {fields}" if fields else "")
                  + (f"\n    declares: {says}" if says else ""), highlight=False)


@methods_app.command("memory")
def methods_memory(
    model: Annotated[str, typer.Option(help="model (alias, dir, .gguf, hub id); only its config is read")]
    = "smollm2-135m",
    optimizer: Annotated[str, typer.Option(help="adamw, adamw_8bit or sgd")] = "adamw",
) -> None:
    """Weights / grads / optimizer memory of every method with default params (activations excluded)."""
    from ftatlas.methods.memory import memory_table
    from ftatlas.run_report import rich_table

    try:
        rows = memory_table(model, optimizer)
    except USER_ERRORS as e:
        fail(e)
    out.print(rich_table(rows, f"{model}: memory in GiB (weights + grads + {optimizer} states; no activations)"))


@config_app.command("validate")
def config_validate(
    files: Annotated[list[Path], typer.Argument(help="recipe YAML files")],
    overrides: Annotated[list[str] | None, typer.Option("--set", help="override key=value")] = None,
) -> None:
    """Validate recipes without loading any model."""
    from ftatlas.models.loading import check_model_name
    from ftatlas.resolve import load_recipe

    for f in files:
        try:
            check_model_name(load_recipe(f, overrides).model.name)  # a name, a path check: nothing loads
        except USER_ERRORS as e:
            fail(e)
        out.print(f"{f}: OK")


@config_app.command("schema")
def config_schema() -> None:
    """The recipe's JSON schema (every field with its description)."""
    from ftatlas.recipe import Recipe

    out.print_json(json.dumps(Recipe.model_json_schema()))

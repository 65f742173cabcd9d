"""Load what a run produced (adapter/ or model/), or any model source, for eval and chat."""

from __future__ import annotations

from pathlib import Path

from ftatlas.models.device import resolve_device, torch_dtype
from ftatlas.models.loading import Loaded, load_model, load_tokenizer
from ftatlas.recipe import Recipe
from ftatlas.resolve import load_recipe
from ftatlas.runs import RunDir


def load_recipe_base(recipe: Recipe, device: str) -> Loaded:
    """The recipe's base model, loaded as its method trains it (e.g. 4-bit for qlora), with its dtype/template."""

    options = recipe.axes.method.entry().load_options(recipe.method_params(), device)
    return load_model(recipe.model.name, dtype=torch_dtype(recipe.model.dtype), device=device,
                      template=recipe.model.template, head=recipe.axes.objective.entry.head, **options)


def load_run_or_model(target: str, device: str = "auto") -> tuple[Loaded, Recipe | None, RunDir | None]:
    """A run dir -> its base + adapter (or full model) and recipe; anything else -> a model source."""
    dev = resolve_device(device)
    if (Path(target) / "recipe.yaml").is_file():
        run = RunDir.open(target)
        recipe = load_recipe(run.recipe_file)

        if not recipe.axes.method.entry.trains:  # method none: the run is the base model + context
            base = load_recipe_base(recipe, dev)
            return Loaded(base.model.eval(), base.tokenizer, base.source), recipe, run
        weights = run.weights_dir()
        if weights == run.adapter_dir:
            from peft import PeftModel

            from ftatlas.methods.base import keep_prompt_in_generation

            base = load_recipe_base(recipe, dev)
            model = keep_prompt_in_generation(PeftModel.from_pretrained(base.model, str(weights)).to(dev))
            source = base.source
        else:

            loaded = load_model(str(weights), device=dev, head=recipe.axes.objective.entry.head)
            model, source = loaded.model, loaded.source
        # The tokenizer saved beside the weights carries the template the run trained with.
        return Loaded(model.eval(), load_tokenizer(str(weights)), source), recipe, run
    return load_model(target, device=dev), None, None

"""Load what a run produced (adapter/ or model/), or any model source, for eval and chat."""

from __future__ import annotations

from pathlib import Path

from ftatlas.models.device import resolve_device
from ftatlas.models.loading import Loaded, load_model, load_tokenizer
from ftatlas.recipe import Recipe, load_recipe
from ftatlas.runs import RunDir


def load_run_or_model(target: str, device: str = "auto") -> tuple[Loaded, Recipe | None, RunDir | None]:
    """A run dir -> its base + adapter (or full model) and recipe; anything else -> a model source."""
    dev = resolve_device(device)
    if (Path(target) / "recipe.yaml").is_file():
        run = RunDir.open(target)
        recipe = load_recipe(run.recipe_file)
        weights = run.weights_dir()
        if weights == run.adapter_dir:
            from peft import PeftModel

            from ftatlas.methods import METHODS

            # the base is loaded as the method trained it (e.g. 4-bit for qlora)
            options = METHODS.get(recipe.method.name)().load_options(recipe.method_params(), dev)
            base = load_model(recipe.model.name, device=dev, template=recipe.model.template, **options)
            model = PeftModel.from_pretrained(base.model, str(weights)).to(dev)
            source = base.source
        else:
            loaded = load_model(str(weights), device=dev)
            model, source = loaded.model, loaded.source
        # The tokenizer saved beside the weights carries the template the run trained with.
        return Loaded(model.eval(), load_tokenizer(str(weights)), source), recipe, run
    return load_model(target, device=dev), None, None

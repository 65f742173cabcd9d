"""What an export starts from: the run's model as one plain transformers model (adapter merged in),
its tokenizer with the chat template it trained with, and the recipe that says how it is scored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ftatlas.methods import METHODS
from ftatlas.models.loading import load_model, load_tokenizer
from ftatlas.objectives import OBJECTIVES
from ftatlas.recipe import Recipe, load_recipe
from ftatlas.runs import RunDir


class ExportError(ValueError):
    """A run or format that cannot be exported as asked; the message says why and what to do."""


@dataclass
class Source:
    run: RunDir
    recipe: Recipe
    model: PreTrainedModel  # fp32, adapter merged, eval mode
    tokenizer: PreTrainedTokenizerBase  # carries the run's chat template
    adapter_dir: Path | None  # the peft adapter it came from, if any (for GGUF LoRA export)
    base_source: str  # the base model's local dir or hub id


def load_source(run_dir: str | Path) -> Source:
    """The run's model merged into one fp32 transformers model, ready to save or convert."""
    run = RunDir.open(run_dir)
    recipe = load_recipe(run.recipe_file)
    method = METHODS.get(recipe.method.name)
    objective = OBJECTIVES.get(recipe.objective.name)
    if objective.head != "causal_lm":
        raise ExportError(f"{run.path}: objective {recipe.objective.name!r} trains a {objective.head} head, "
                          "which llama.cpp and generation consumers cannot use; export causal-LM runs")
    if method.trains and method().merge_note:  # method none has nothing to merge: it exports its base
        raise ExportError(f"{run.path}: method {recipe.method.name!r} cannot be exported as one model: "
                          f"{method().merge_note}")
    # Exports are written from full precision: a 4-bit (qlora) base merges into its fp32 original.
    base = load_model(recipe.model.name, dtype=torch.float32, template=recipe.model.template)
    if not method.trains:  # method none: the base model itself, with the recipe's template
        return Source(run, recipe, base.model.eval(), base.tokenizer, None, base.source)
    weights = run.weights_dir()
    tokenizer = load_tokenizer(str(weights))  # the template the run trained with
    if weights == run.adapter_dir:
        model = PeftModel.from_pretrained(base.model, str(weights)).merge_and_unload()
        return Source(run, recipe, model.eval(), tokenizer, weights, base.source)
    full = load_model(str(weights), dtype=torch.float32)
    return Source(run, recipe, full.model.eval(), tokenizer, None, base.source)

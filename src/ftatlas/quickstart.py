"""``ftatlas quickstart``: base vs LoRA SFT on the built-in contacts task, on the embedded model."""

from __future__ import annotations

from ftatlas.recipe import Recipe
from ftatlas.resolve import build_recipe

QUICKSTART = {
    "model": {"name": "smollm2-135m"},
    "data": {"builtin": "contacts", "max_length": 256},
    "method": {"name": "lora", "r": 16, "alpha": 32},
    "objective": {"name": "sft"},
    # epochs and gradient checkpointing: auto (one epoch here, held-out loss watched; off where memory allows)
    "train": {"lr": 3e-4, "batch_size": 8, "scheduler": "cosine", "warmup": 0.05, "log_every": 5},
    "eval": {"max_examples": 100, "batch_size": 25, "decode": {"max_new_tokens": 40}},
    "output": {"dir": "runs", "name": "quickstart"},
}


def quickstart_recipe(overrides: list[str] | None = None) -> Recipe:
    return build_recipe(QUICKSTART, overrides, source="quickstart")

"""An arena file: shared blocks (model, data, train, eval, output) and a list of cells, each an adaptation.

```yaml
name: knowledge
model: {name: smollm2-135m}
data: {builtin: knowledge}
train: {epochs: 1, batch_size: 8}
eval: {max_examples: 50}
cells:
  - {name: rag, method: none, context: {mode: rag, index: builtin:knowledge, k: 2}}
  - {name: lora, method: {name: lora, r: 16}, set: [train.epochs=2], export: [gguf:q4_k_m]}
```

A cell's ``method``/``objective``/``context``/``train``/``eval`` blocks are merged over the shared ones and
its ``set`` list of dotted overrides comes last, so each cell resolves to an ordinary recipe. A cell's ``export``
list adds one row per exported artifact, re-scored on the same held-out split (``ftatlas.arena.exports``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftatlas.recipe import Recipe, deep_merge, dump_recipe
from ftatlas.resolve import build_recipe

CELL_KEYS = ("method", "objective", "context", "train", "eval", "data")


class Cell(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="cell name: letters, digits, - and _ (its folder name)")
    method: Any = None
    objective: Any = None
    context: Any = None
    train: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    set: list[str] = Field(default_factory=list, description="dotted overrides, e.g. train.lr=1e-4")
    export: list[str] = Field(default_factory=list, description="exports re-scored as extra rows of the table, "
                              "FORMAT[:QUANT] as for ftatlas export, e.g. [gguf:q4_k_m, bnb-4bit]")

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"cell name {v!r}: use letters, digits, '-', '_' or '.'")
        return v

    @field_validator("export")
    @classmethod
    def _formats(cls, v: list[str]) -> list[str]:
        from ftatlas.export.formats import EXPORTERS, import_formats
        from ftatlas.registry import UnknownNameError

        import_formats()
        for spec in v:
            try:
                EXPORTERS.get(spec.partition(":")[0])
            except UnknownNameError as e:  # pydantic reports ValueErrors with the field's location
                raise ValueError(str(e)) from None
        return v


class ArenaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., description="arena name: results go to <output.dir>/<name>/")
    model: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any]
    train: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=lambda: {"dir": "arena"})
    cells: list[Cell] = Field(..., min_length=1)
    allow_overlap: bool = Field(False, description="give verdicts even for cells whose training rows overlap "
                                                   "their held-out rows (a leak inflates the score)")

    @field_validator("cells")
    @classmethod
    def _unique(cls, cells: list[Cell]) -> list[Cell]:
        seen = [c.name for c in cells]
        dupes = sorted({n for n in seen if seen.count(n) > 1})
        if dupes:
            raise ValueError(f"cell names must be unique; repeated: {', '.join(dupes)}")
        return cells

    def recipe_for(self, cell: Cell, out_dir: str) -> Recipe:
        base: dict[str, Any] = {"model": self.model, "data": self.data, "train": self.train, "eval": self.eval}
        for key in CELL_KEYS:
            block = getattr(cell, key)
            if block is None:
                continue
            base[key] = deep_merge(base.get(key) or {}, block) if isinstance(block, dict) and key in (
                "train", "eval", "data") else block
        base["output"] = {"dir": out_dir, "name": cell.name, "overwrite": True}
        return build_recipe(base, cell.set, source=f"arena {self.name}, cell {cell.name}")


def recipe_hash(recipe: Recipe) -> str:
    """Identity of a cell's work: a finished cell is skipped only if its resolved recipe is unchanged."""
    return hashlib.sha256(dump_recipe(recipe).encode()).hexdigest()[:16]

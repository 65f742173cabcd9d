"""Full fine-tuning: every weight learns."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel
from torch import nn

from ftatlas.methods.base import Method, NoParams, register


class FullParams(NoParams):
    default_lr: ClassVar[float] = 5e-5  # train.lr: auto; every weight moves, so a LoRA rate would wreck the base


@register("full")
class Full(Method):
    summary = "all weights train (most memory; best when data and compute are plentiful)"
    decision_leaves = {"C": 0, "K": 2}
    min_rows = 1000  # the decision map's ENOUGH_ROWS: below, full FT of every weight overfits
    Params = FullParams

    def apply(self, model: nn.Module, params: BaseModel) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

"""Full fine-tuning: every weight learns."""

from __future__ import annotations

from pydantic import BaseModel
from torch import nn

from ftatlas.methods.base import Method, register


@register("full")
class Full(Method):
    summary = "all weights train (most memory; best when data and compute are plentiful)"

    def apply(self, model: nn.Module, params: BaseModel) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

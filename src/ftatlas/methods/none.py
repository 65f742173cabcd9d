"""``none``: no training at all; the base model as is. With a context (zero_shot, few_shot, rag) it is the
Atlas' "adapt without training" column: prompt engineering, in-context learning and RAG baselines."""

from __future__ import annotations

from pydantic import BaseModel
from torch import nn

from ftatlas.methods.base import Method, register


@register("none")
class NoTraining(Method):
    summary = "no training: the base model as is (pair with context: zero_shot, few_shot or rag)"
    trains = False
    decision_leaves = {"M": 0, "N": 0}  # RAG or in-context learning: the base model with a context
    merge_note = "nothing to merge: method none trains no weights"

    def apply(self, model: nn.Module, params: BaseModel) -> nn.Module:
        model.requires_grad_(False)
        return model

"""The ``objective`` axis: what the model learns from. One module per objective, registered where it lives."""

from __future__ import annotations

import importlib
import pkgutil

from ftatlas.objectives.base import OBJECTIVES, Objective, TrainContext

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "callbacks"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["OBJECTIVES", "Objective", "TrainContext"]

"""The ``method`` axis: which weights learn. One module per method, registered where it lives.

Every module in this package is imported on first use, so a new method is one new file with
``@METHODS.register("name")`` and nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil

from ftatlas.methods.base import METHODS, Method, ParamCount, PeftMethod, count_params, register

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["METHODS", "Method", "ParamCount", "PeftMethod", "count_params", "register"]

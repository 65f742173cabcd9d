"""The ``context`` axis: what the model sees at inference besides the user's question.

``zero_shot`` (system prompt and prompt template), ``few_shot`` (k solved examples as prior turns) and
``rag`` (retrieved passages with source ids). Every module in this package registers itself; the
retrieval machinery (chunk, embed, index, retrieve) lives in ``context.retrieval``.
"""

from __future__ import annotations

import importlib
import pkgutil

from ftatlas.context.base import CONTEXTS, Augmented, Context, ContextParams, build_context

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in ("base", "retrieval"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["CONTEXTS", "Augmented", "Context", "ContextParams", "build_context"]

"""The ``ftatlas`` command line: thin sub-commands, one module per command group.

Every module in this package that defines commands registers them on ``common.app`` (or a ``group``) when
imported; this file imports them all, so a new verb is a new module here and nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil

from ftatlas.cli.common import app

_FIRST = ("run", "evaluate", "advise", "export")  # the order `ftatlas --help` lists the everyday verbs in
_found = {m.name for m in pkgutil.iter_modules(__path__)} - {"common", "__main__"}
for _mod in [*(m for m in _FIRST if m in _found), *sorted(_found - set(_FIRST))]:
    importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["app"]

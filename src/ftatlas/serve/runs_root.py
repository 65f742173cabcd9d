"""Runs that appear after start-up: ``ftatlas serve --runs DIR`` (and the UI) serve every finished run under DIR.

A finished run is a folder directly under DIR with a ``recipe.yaml`` and its result: ``adapter/`` or ``model/``
(written last, by an atomic rename, when training ends), or ``eval.json`` for a ``method: none`` run. Its id is
the folder's name. It is loaded on its first request and then stays in the pool like a run given at start-up:
an adapter run joins a base already in memory with ``load_adapter``. Loading is serialized, so concurrent first
requests for one run load it once. A run is loaded once: retraining it in place needs a server restart.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from ftatlas.serve.pool import Pool, Served

log = logging.getLogger("ftatlas.serve")


def finished(path: Path) -> bool:
    """True for a run dir whose training (or context-only evaluation) has ended."""
    return (path / "recipe.yaml").is_file() and any((path / d).exists() for d in ("adapter", "model", "eval.json"))


class RunsRoot:
    """The finished runs under ``root``, loaded into ``pool`` on demand."""

    def __init__(self, root: str | Path, pool: Pool) -> None:
        self.root, self.pool = Path(root), pool
        self.loaded: list[str] = []  # ids loaded on demand, in order
        self._lock = threading.Lock()

    def path(self, model_id: str) -> Path | None:
        """The finished run dir this id names, or None (ids are plain folder names: no paths, no dot files)."""
        if not model_id or model_id != Path(model_id).name or model_id.startswith("."):
            return None
        path = self.root / model_id
        return path if finished(path) else None

    def ids(self) -> list[str]:
        """Finished runs under the root that the pool does not hold yet, by name."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.name not in self.pool.models and not p.name.startswith(".") and finished(p))

    def load(self, model_id: str) -> Served:
        """The pool's model for ``model_id``, loading the run on first use (once, whatever the concurrency)."""
        with self._lock:
            if model_id in self.pool.models:
                return self.pool.models[model_id]
            path = self.path(model_id)
            if path is None:
                return self.pool.get(model_id)  # 404 model_not_found
            log.info("loading run %s on its first request", path)
            served = self.pool.load_run(path)
            self.loaded.append(model_id)
            return served

    def card(self, model_id: str) -> dict[str, Any]:
        """What ``/v1/models`` says of a run not loaded yet (read from its recipe, nothing loaded)."""
        kind, context = "chat", None
        try:
            from ftatlas.objectives import OBJECTIVES
            from ftatlas.recipe import load_recipe

            recipe = load_recipe(self.root / model_id / "recipe.yaml")
            kind = "reward" if OBJECTIVES.get(recipe.objective.name).head == "reward" else "chat"
            context = recipe.context.name if recipe.context.name != "zero_shot" else None
        except Exception as e:  # a broken recipe is reported when the run is asked for, with the file named
            log.warning("%s: %s", self.root / model_id / "recipe.yaml", e)
        return {"kind": kind, "adapter": None, "source": str(self.root / model_id), "backend": "transformers",
                "context": context, "loaded": False}

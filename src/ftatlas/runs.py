"""The run directory contract: ``runs/<name>/`` with recipe.yaml, metrics.jsonl, checkpoints/,
adapter/ or model/, eval.json, report.md. Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDirError(RuntimeError):
    pass


class RunDir:
    """One run's folder. Paths are fixed by the contract so other verbs (eval, chat) can find things."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, parent: str | Path, name: str, overwrite: bool = False) -> RunDir:
        path = Path(parent) / name
        if path.exists() and any(path.iterdir()) and not overwrite:
            raise RunDirError(f"run directory {path} exists; pick output.name or set output.overwrite=true")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if not run.recipe_file.is_file():
            raise RunDirError(f"{path} is not a run directory (no recipe.yaml)")
        return run

    recipe_file = property(lambda self: self.path / "recipe.yaml")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    adapter_dir = property(lambda self: self.path / "adapter")
    model_dir = property(lambda self: self.path / "model")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")

    def write_text(self, name: str, text: str) -> Path:
        atomic_write(self.path / name, text)
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        return self.write_text(name, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text())

    def log_metrics(self, row: dict[str, Any]) -> None:
        """Append one JSON line; a line is written whole with one write call."""
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.is_file():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]

    def weights_dir(self) -> Path:
        """adapter/ for peft methods, model/ for methods that change the base weights."""
        for d in (self.adapter_dir, self.model_dir):
            if d.is_dir():
                return d
        raise RunDirError(f"{self.path} has no adapter/ or model/ yet (did training finish?)")

    def save_weights(self, model: Any, tokenizer: PreTrainedTokenizerBase) -> Path:
        """Save a peft model to adapter/ or a full model to model/, atomically, with the tokenizer."""
        from peft import PeftModel

        target = self.adapter_dir if isinstance(model, PeftModel) else self.model_dir
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{target.name}-"))
        if isinstance(model, PeftModel):  # only the trained adapter (TRL adds a frozen 'ref' copy for DPO/KTO)
            model.save_pretrained(tmp, selected_adapters=[model.active_adapter])
        else:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)  # carries the chat template used in training
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        return target


def default_run_name(method: str, objective: str) -> str:
    return f"{method}-{objective}-{time.strftime('%Y%m%d-%H%M%S')}"

"""The run directory contract: ``runs/<name>/`` with recipe.yaml, metrics.jsonl, checkpoints/,
adapter/ or model/, eval.json, report.md. Every file is written atomically (temp file + rename).
"""

from __future__ import annotations

import ctypes
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
    def for_resume(cls, parent: str | Path, name: str | None) -> tuple[RunDir, Path]:
        """The run to continue and its last complete checkpoint; nothing is written here, so a run that cannot
        resume is left exactly as it was and the error says what to run instead."""
        if name is None:
            raise RunDirError("--resume continues a named run: set output.name to the run's directory name")
        path = Path(parent) / name
        fresh = "train afresh (without --resume; add output.overwrite=true to replace what is there)"
        if not (path / "recipe.yaml").is_file():
            raise RunDirError(f"cannot resume: {path} is not a run directory (no recipe.yaml); {fresh}")
        done = complete_checkpoints(path / "checkpoints")
        if not done:
            raise RunDirError(f"cannot resume: {path / 'checkpoints'} holds no complete checkpoint (train.save_every "
                              f"sets how often one is saved); {fresh}")
        return cls(path), done[-1]

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
        """Append one JSON line with one write call. A line torn by a kill mid-write is ended first, so it stays
        a single unreadable line (skipped by ``read_metrics``) instead of swallowing the next row."""
        torn = self.metrics_file.is_file() and self._ends_torn()
        with open(self.metrics_file, "a") as f:
            f.write(("\n" if torn else "") + json.dumps(row) + "\n")

    def _ends_torn(self) -> bool:
        with open(self.metrics_file, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row of metrics.jsonl. A line that does not parse is a row cut short by a kill: skipped when it
        is the last line or was ended by a later write (see ``log_metrics``); any other bad line is an error."""
        if not self.metrics_file.is_file():
            return []
        rows = []
        lines = self.metrics_file.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if i < len(lines) and not _torn_fragment(line):
                    raise RunDirError(f"{self.metrics_file}:{i}: not a JSON row ({e.msg})") from None
        return rows

    def truncate_metrics(self, step: int) -> None:
        """Keep only rows up to ``step`` (a resume from checkpoint-``step`` logs the later steps again)."""
        rows = [r for r in self.read_metrics() if r.get("step", 0) <= step]
        atomic_write(self.metrics_file, "".join(json.dumps(r) + "\n" for r in rows))

    def weights_dir(self) -> Path:
        """adapter/ for peft methods, model/ for methods that change the base weights."""
        for d in (self.adapter_dir, self.model_dir):
            if d.is_dir():
                return d
        raise RunDirError(f"{self.path} has no adapter/ or model/ yet (did training finish?)")

    def save_weights(self, model: Any, tokenizer: PreTrainedTokenizerBase) -> Path:
        """Save a peft model to adapter/ or a full model to model/ with the tokenizer: written to a temp dir,
        then swapped in by one atomic rename, so the run always has a complete set of weights (old or new)."""
        from peft import PeftModel

        target = self.adapter_dir if isinstance(model, PeftModel) else self.model_dir
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f".{target.name}-"))
        if isinstance(model, PeftModel):  # only the trained adapter (TRL adds a frozen 'ref' copy for DPO/KTO)
            model.save_pretrained(tmp, selected_adapters=[model.active_adapter])
        else:
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)  # carries the chat template used in training
        swap_dirs(tmp, target)
        other = self.model_dir if target == self.adapter_dir else self.adapter_dir
        if other.is_dir():  # an overwritten run that trained the other kind of weights before
            shutil.rmtree(other)
        return target


def complete_checkpoints(folder: Path) -> list[Path]:
    """``checkpoint-N`` dirs that hold a trainer state (the last file a save writes), oldest first."""
    found = [p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _torn_fragment(line: str) -> bool:
    """A row cut short: it starts like one of our rows but does not close."""
    return line.lstrip().startswith("{") and not line.rstrip().endswith("}")


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        return None


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def swap_dirs(new: Path, target: Path) -> None:
    """Put the directory ``new`` at ``target``. An existing ``target`` is exchanged with ``new`` in one atomic
    ``renameat2(RENAME_EXCHANGE)`` (Linux) and then deleted; elsewhere it is first renamed aside, which leaves a
    moment with neither (the old copy stays on disk until the new one is in place)."""
    if not target.exists():
        os.replace(new, target)
        return
    exchange = _renameat2()
    if exchange is not None and exchange(_AT_FDCWD, bytes(new), _AT_FDCWD, bytes(target), _RENAME_EXCHANGE) == 0:
        shutil.rmtree(new)  # now holds the old weights
        return
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old)


def default_run_name(method: str, objective: str) -> str:
    return f"{method}-{objective}-{time.strftime('%Y%m%d-%H%M%S')}"

"""Trainer checkpoints that are complete or absent: each is written to a hidden staging dir under checkpoints/
and renamed to ``checkpoint-N`` only once weights, optimizer, scheduler, RNG and trainer state are all on disk.
A run killed mid-save leaves a ``.staging-*`` dir that resume ignores (and the next save clears)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ftatlas.runs import complete_checkpoints  # noqa: F401  (re-exported: what resume looks for)

STAGING = ".staging-"


def atomic_checkpoints(trainer: Any) -> Any:
    """Wrap ``trainer._save_checkpoint`` (transformers writes checkpoint-N in place) to stage and rename."""
    original = trainer._save_checkpoint
    get_output_dir = trainer._get_output_dir

    def save(model: Any, trial: Any) -> None:
        real = Path(get_output_dir(trial=trial))
        real.mkdir(parents=True, exist_ok=True)
        for old in real.glob(f"{STAGING}*"):  # left by a run killed mid-save
            shutil.rmtree(old, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(dir=real, prefix=STAGING))
        trainer._get_output_dir = lambda trial=None: str(staging)  # shadows the method for this one save
        try:
            original(model, trial)
        finally:
            del trainer._get_output_dir
        name = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
        if (real / name).exists():  # saved again at the same step (e.g. the end of training)
            shutil.rmtree(real / name)
        os.replace(staging / name, real / name)
        shutil.rmtree(staging, ignore_errors=True)
        _point_best_at(trainer, real, real / name)
        if trainer.args.should_save:
            rotate_checkpoints(output_dir=str(real), save_total_limit=trainer.args.save_total_limit,
                               best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=True)

    trainer._save_checkpoint = save
    return trainer


def _point_best_at(trainer: Any, real: Path, saved: Path) -> None:
    """Early stopping / load_best_model_at_end: the best checkpoint recorded while staging lives in ``real``."""
    step = trainer.state.best_global_step
    best = real / f"{PREFIX_CHECKPOINT_DIR}-{step}" if step else None
    if best is None or not best.is_dir():
        return
    trainer.state.best_model_checkpoint = str(best)
    tmp = saved / ".trainer_state.json.tmp"
    trainer.state.save_to_json(str(tmp))
    os.replace(tmp, saved / "trainer_state.json")  # the saved state names the renamed dir, not the staging one

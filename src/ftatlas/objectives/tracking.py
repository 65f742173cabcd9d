"""Experiment trackers: ``train.report_to`` handed to the Trainer's own integrations (TensorBoard, MLflow,
W&B, trackio, ...), with where each one writes decided here so a run is found next to its run dir.

metrics.jsonl (MetricsLogger) is written whatever trackers are on; trackers are extra views of the same logs.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ftatlas.recipe import Recipe
from ftatlas.runs import RunDir

# The package each tracker needs, where it differs from the tracker's name.
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio",
            "comet_ml": "comet_ml", "clearml": "clearml", "neptune": "neptune", "dvclive": "dvclive",
            "swanlab": "swanlab", "codecarbon": "codecarbon"}  # fmt: skip


def known_trackers() -> list[str]:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return list(INTEGRATION_TO_CALLBACK)


def check_trackers(names: list[str]) -> list[str]:
    """Recipe check: every name is one of transformers' integrations ("none" alone means none)."""
    if names in (["none"], []):
        return []
    known = known_trackers()
    for name in names:
        if name not in known:
            raise ValueError(f"unknown tracker {name!r}; known: {', '.join(known)}")
    return list(dict.fromkeys(names))


def require_installed(names: list[str]) -> None:
    """Stop before training when a tracker's package is missing (the Trainer would fail mid-setup)."""
    for name in names:
        package = PACKAGES.get(name, name)
        if importlib.util.find_spec(package) is None:
            hint = " (pip install 'ftatlas[track]')" if name in ("tensorboard", "mlflow") else ""
            raise ValueError(f"train.report_to: {name!r} needs the {package!r} package{hint}")


def experiment_name(recipe: Recipe) -> str:
    return recipe.train.experiment or Path(recipe.output.dir).resolve().name


def mlflow_uri(recipe: Recipe) -> str:
    """train.mlflow_uri, else $MLFLOW_TRACKING_URI, else a SQLite store next to the run dirs (offline)."""
    if recipe.train.mlflow_uri:
        return recipe.train.mlflow_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(recipe.output.dir).resolve() / 'mlflow.db'}"


def tracker_arguments(recipe: Recipe, run: RunDir) -> dict[str, Any]:
    """TrainingArguments fields: report_to (TensorBoard is attached by ``attach_trackers`` instead, to write into
    the run dir) and run_name (the run dir's name, so the tracker's run matches the folder)."""
    names = [n for n in recipe.train.report_to if n != "tensorboard"]
    return {"report_to": names or "none", "run_name": run.path.name}


@contextmanager
def trackers(trainer: Any, recipe: Recipe, run: RunDir) -> Iterator[str | None]:
    """Around training and the final eval-loss pass: TensorBoard writes ``<run>/tensorboard``; MLflow logs one
    run named after the run dir into ``experiment_name`` at ``mlflow_uri``, opened here so the eval pass after
    training lands in it too (the Trainer's callback would close it at the end of training). Yields the MLflow
    run id (or None). Only the main process writes (the integrations check it too)."""
    names = recipe.train.report_to
    require_installed(names)
    if names and not hasattr(trainer, "add_callback"):  # ftatlas's own loops (ppo) have no Trainer callbacks
        raise ValueError(f"train.report_to: objective {recipe.objective.name!r} trains in its own loop, which "
                         "reports to metrics.jsonl only; drop report_to for it")
    if not names or not trainer.is_world_process_zero():
        yield None
        return
    if "tensorboard" in names:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run.path / "tensorboard"))))
    if "mlflow" not in names:
        yield None
        return
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri(recipe))
    mlflow.set_experiment(experiment_name(recipe))
    with mlflow.start_run(run_name=run.path.name) as active:
        yield active.info.run_id


def log_heldout(run_id: str | None, recipe: Recipe, result: dict) -> None:
    """The held-out scores (eval.json's metrics) into the run's MLflow run, as ``heldout_<metric>``."""
    if run_id is None:
        return
    import mlflow

    numbers = {f"heldout_{k}": float(v) for k, v in result.get("metrics", {}).items() if isinstance(v, int | float)}
    mlflow.set_tracking_uri(mlflow_uri(recipe))
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(numbers)

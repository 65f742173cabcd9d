"""train.report_to: TensorBoard and MLflow (SQLite store) see the run, offline; metrics.jsonl stays."""

from __future__ import annotations

import pytest

from ftatlas.pipeline import train
from ftatlas.recipe import RecipeError, build_recipe
from tests.conftest import tiny_recipe


def test_unknown_tracker_is_named(tiny_model_dir, tmp_path):
    with pytest.raises(RecipeError, match=r"train.report_to.*unknown tracker 'tensorbored'"):
        build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"report_to": ["tensorbored"]}))
    assert build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={"report_to": ["none"]})).train.report_to == []


def test_tensorboard_and_mlflow_see_every_logged_step(tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, train={
        "max_steps": 3, "report_to": ["tensorboard", "mlflow"], "experiment": "tracked"}))
    run = train(recipe, progress=False).run
    jsonl = [r for r in run.read_metrics() if "loss" in r]
    assert [r["step"] for r in jsonl] == [1, 2, 3]  # metrics.jsonl is kept

    events = EventAccumulator(str(run.path / "tensorboard"))
    events.Reload()
    tb = events.Scalars("train/loss")
    assert [e.step for e in tb] == [1, 2, 3]
    assert [e.value for e in tb] == pytest.approx([r["loss"] for r in jsonl], rel=1e-5)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.run_name == "tiny" and mlrun.info.status == "FINISHED"
    history = client.get_metric_history(mlrun.info.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3]
    assert sorted(history, key=lambda m: m.step)[0].value == pytest.approx(jsonl[0]["loss"], rel=1e-5)
    assert "eval_loss" in mlrun.data.metrics  # the eval pass after training lands in the same run
    heldout = run.read_json("eval.json")["metrics"]
    assert mlrun.data.metrics["heldout_exact_match"] == pytest.approx(heldout["exact_match"])

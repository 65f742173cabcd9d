"""`ftatlas merge-models`: mergekit merges of runs, re-scored on a run's held-out split."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.export.merge_models import load_spec
from ftatlas.export.source import ExportError, load_source
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
from tests.conftest import tiny_recipe

pytest.importorskip("mergekit")
IDS = torch.tensor([[1, 20, 300, 4000, 5, 60, 700, 8]])


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    runs = []
    for name, seed in (("a", 1), ("b", 2)):
        r = tiny_recipe(tiny_model_dir, out, method={"name": "lora", "r": 4}, output={"dir": str(out), "name": name},
                        train={"max_steps": 3, "lr": 1e-2, "seed": seed})
        runs.append(train(build_recipe(r), progress=False).run.path)
    return runs


def _spec(tmp_path, **spec):
    path = tmp_path / "merge.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_task_arithmetic_of_one_run_at_weight_one_is_that_run(two_runs, tiny_model_dir, tmp_path):
    a, _ = two_runs
    path = _spec(tmp_path, method="task_arithmetic", base=str(tiny_model_dir), out=str(tmp_path / "m"),
                 models=[{"run": str(a), "weight": 1.0}])
    res = CliRunner().invoke(app, ["merge-models", str(path)])
    assert res.exit_code == 0, res.output
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=IDS).logits, load_source(a).model(input_ids=IDS).logits,
                                   atol=1e-4, rtol=1e-4)
    report = json.loads((tmp_path / "m" / "merge.json").read_text())
    assert report["merged"]["n"] == 4 and set(report["merged"]["metrics"]) == set(report["inputs"][0]["metrics"])
    assert "merged (task_arithmetic)" in res.output


def test_ties_of_two_runs_differs_from_both_and_is_rescored(two_runs, tiny_model_dir, tmp_path):
    a, b = two_runs
    path = _spec(tmp_path, method="ties", base=str(tiny_model_dir), out=str(tmp_path / "t"),
                 models=[{"run": str(a), "weight": 0.5, "density": 0.5}, {"run": str(b), "weight": 0.5,
                                                                          "density": 0.5}])
    from ftatlas.export.merge_models import merge_models

    report = merge_models(load_spec(path), progress=False)
    assert [i["run"] for i in report["inputs"]] == [str(a), str(b)] and report["merged"]["metrics"]
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "t").eval()
    with torch.no_grad():
        m = merged(input_ids=IDS).logits
        for run in (a, b):
            assert (m - load_source(run).model(input_ids=IDS).logits).abs().max() > 1e-4
    assert (tmp_path / "t" / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (tmp_path / "t" / "tokenizer_config.json").read_text())


def test_bad_merge_specs_say_what_is_wrong(tmp_path):
    with pytest.raises(ExportError, match="exactly one of run: or model:"):
        load_spec(_spec(tmp_path, method="linear", out="x", models=[{"weight": 1.0}]))
    with pytest.raises(ExportError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")

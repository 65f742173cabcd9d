"""``ftatlas eval --harness``: lm-evaluation-harness on the tiny model with a custom local task (no download)."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import yaml
from conftest import tiny_recipe, write_jsonl
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.models.loading import load_tokenizer

ROWS = [{"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)], "answer": i % 3}
        for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 1), (2, 2), (7, 1), (3, 3), (4, 4)])]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def task_dir(tmp_path):
    """A multiple-choice task over a local jsonl, loaded by lm-eval's `json` dataset builder."""
    data = write_jsonl(tmp_path / "sums.jsonl", ROWS)
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "tiny_sums.yaml").write_text(yaml.safe_dump({
        "task": "tiny_sums", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }))
    return folder


def lm_eval_direct(pretrained, task_dir, limit=None, **model_args):
    """The same task through lm-eval's own API (HF backend by name), for comparison."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    res = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(pretrained), "dtype": "float32",
                                                          **model_args},
                                  tasks=["tiny_sums"], task_manager=TaskManager(include_path=str(task_dir)),
                                  apply_chat_template=True, device="cpu", batch_size=4, log_samples=False,
                                  limit=limit)
    return res["results"]["tiny_sums"]["acc,none"]


def test_harness_on_a_model_dir_matches_lm_eval(tiny_model_dir, task_dir, tmp_path):
    out = tmp_path / "h.json"
    res = CliRunner().invoke(app, ["eval", str(tiny_model_dir), "--harness", "tiny_sums", "--harness-include",
                                   str(task_dir), "--batch-size", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "tiny_sums" in res.output and "acc" in res.output and f"wrote {out}" in res.output
    saved = json.loads(out.read_text())
    acc = saved["results"]["tiny_sums"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and acc * len(ROWS) == pytest.approx(round(acc * len(ROWS)))  # k of 7 right
    assert saved["n-samples"]["tiny_sums"] == {"original": len(ROWS), "effective": len(ROWS)}
    assert saved["ftatlas"]["chat_template"] is True and saved["ftatlas"]["peft"] is None
    assert acc == pytest.approx(lm_eval_direct(tiny_model_dir, task_dir))


def test_harness_on_a_lora_run_uses_its_adapter_and_writes_into_the_run(tiny_model_dir, task_dir, shared_run):
    from tests.test_method_matrix import method_run

    run = method_run(shared_run, "lora").run.path  # the method matrix's 2-step LoRA run
    res = CliRunner().invoke(app, ["eval", str(run), "--harness", "tiny_sums", "--harness-include", str(task_dir),
                                   "--limit", "5", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "eval_harness.json").read_text())
    assert saved["ftatlas"]["peft"] == str(run / "adapter")
    assert saved["n-samples"]["tiny_sums"]["effective"] == 5
    adapter = str(run / "adapter")
    template = load_tokenizer(adapter).chat_template  # the one the run trained with
    assert saved["ftatlas"]["chat_template_sha256"] == hashlib.sha256(template.encode()).hexdigest()
    assert saved["results"]["tiny_sums"]["acc,none"] == pytest.approx(
        lm_eval_direct(tiny_model_dir, task_dir, limit=5, peft=adapter, tokenizer=adapter))


def test_harness_on_a_no_training_run_uses_its_template_and_says_context_is_not_applied(tiny_model_dir, task_dir,
                                                                                         tmp_path):
    from ftatlas.models.templates import NAMED_TEMPLATES
    from ftatlas.pipeline import train
    from ftatlas.resolve import build_recipe

    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path / "runs", method={"name": "none"},
                                      model={"template": "plain"}, context={"name": "few_shot", "k": 1}))
    run = train(recipe).run.path
    res = CliRunner().invoke(app, ["eval", str(run), "--harness", "tiny_sums", "--harness-include", str(task_dir),
                                   "--limit", "2"])
    assert res.exit_code == 0, res.output
    assert "note: lm-eval scores the model alone: the run's few_shot context is not applied" in res.output
    saved = json.loads((run / "eval_harness.json").read_text())
    assert saved["ftatlas"]["pretrained"] == str(tiny_model_dir) and saved["ftatlas"]["peft"] is None
    assert saved["ftatlas"]["chat_template_sha256"] == hashlib.sha256(NAMED_TEMPLATES["plain"].encode()).hexdigest()


def test_harness_errors_are_clear(tiny_model_dir, task_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(tiny_model_dir), "--harness", "tiny_sumz", "--harness-include",
                              str(task_dir)])
    assert res.exit_code == 2 and "unknown lm-eval task 'tiny_sumz'" in res.output and "tiny_sums" in res.output
    res = runner.invoke(app, ["eval", str(tiny_model_dir), "--harness", "tiny_sums", "--harness-include",
                              str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "no such folder" in res.output
    res = runner.invoke(app, ["eval", str(tiny_model_dir), "--harness", "tiny_sums", "--data", "x.jsonl"])
    assert res.exit_code == 2 and "--data" in res.output


def test_harness_without_lm_eval_says_how_to_install(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    res = CliRunner().invoke(app, ["eval", str(tiny_model_dir), "--harness", "tiny_sums"])
    assert res.exit_code == 2 and "pip install 'ftatlas[harness]'" in res.output


def test_shipped_example_task_reads_its_local_file(monkeypatch):
    from pathlib import Path

    from ftatlas.evaluate.harness import load_tasks

    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)  # the example's data_files path is relative to the repository root
    (task,) = load_tasks(["capitals_mc"], [root / "examples" / "harness"])
    docs = list(task.test_docs())
    assert len(docs) == 30
    for doc in docs:  # the target index points at the row's own answer among its choices
        assert task.doc_to_choice(doc)[task.doc_to_target(doc)] == doc["messages"][2]["content"]

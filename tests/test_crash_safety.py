"""Crash safety: a torn metrics.jsonl line, weights swapped without a moment of no weights, checkpoints that are
complete or absent, and a training process SIGKILLed mid-run that resumes to the same loss curve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
from ftatlas.runs import RunDir, RunDirError, complete_checkpoints
from tests.conftest import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def test_torn_last_metrics_line_is_skipped_and_the_next_row_starts_a_new_line(tmp_path):
    run = RunDir(tmp_path)
    run.log_metrics({"step": 1, "loss": 2.0})
    with open(run.metrics_file, "a") as f:
        f.write('{"step": 2, "lo')  # the process died mid-write
    assert run.read_metrics() == [{"step": 1, "loss": 2.0}]
    run.log_metrics({"step": 2, "loss": 1.5})
    assert run.read_metrics() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]


def test_a_corrupt_metrics_line_in_the_middle_names_file_and_line(tmp_path):
    run = RunDir(tmp_path)
    run.metrics_file.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(RunDirError, match=r"metrics\.jsonl:2: not a JSON row"):
        run.read_metrics()


@pytest.mark.parametrize("exchange", [True, False])
def test_save_weights_swaps_in_the_new_weights_and_leaves_nothing_behind(tiny_model, tokenizer, tmp_path,
                                                                         monkeypatch, exchange):
    import ftatlas.runs as runs

    if not exchange:  # the portable path: rename aside, rename in, delete
        monkeypatch.setattr(runs, "_renameat2", lambda: None)
    run = RunDir(tmp_path)
    run.save_weights(tiny_model, tokenizer)
    (run.model_dir / "marker").write_text("old")
    run.save_weights(tiny_model, tokenizer)
    assert (run.model_dir / "config.json").is_file() and not (run.model_dir / "marker").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def recipe_for(tiny_model_dir: Path, out: Path, name: str) -> dict:
    return tiny_recipe(tiny_model_dir, out, output={"dir": str(out), "name": name},
                       train={"max_steps": 6, "batch_size": 4, "lr": 1e-3, "log_every": 1, "save_every": 1,
                              "save_total_limit": 2, "precision": "fp32", "scheduler": "linear", "warmup": 0},
                       eval={"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}})


def losses(run: RunDir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in run.read_metrics() if "loss" in r]


def test_a_checkpoint_killed_mid_save_is_never_seen(tiny_model_dir, tmp_path, monkeypatch):
    from transformers import Trainer

    original = Trainer._save_rng_state

    def dies_at_step_3(self, output_dir):
        if self.state.global_step == 3:
            raise KeyboardInterrupt  # stands in for a kill between the optimizer and the trainer state
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(build_recipe(recipe_for(tiny_model_dir, tmp_path, "r")), progress=False)
    ckpts = tmp_path / "r" / "checkpoints"
    assert [p.name for p in complete_checkpoints(ckpts)] == ["checkpoint-1", "checkpoint-2"]
    assert not (ckpts / "checkpoint-3").exists()  # only a hidden .staging-* dir holds the torn save


SCRIPT = """
import sys, time, yaml
from ftatlas.objectives.callbacks import HeapTrim
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
trim = HeapTrim.on_step_end
def slowed(*a, **k):  # time for the test to kill the run mid-way
    time.sleep(0.7)
    return trim(*a, **k)
HeapTrim.on_step_end = slowed
train(build_recipe(yaml.safe_load(open(sys.argv[1]))), progress=False)
"""


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_loss_curve(tiny_model_dir, tmp_path):
    reference = train(build_recipe(recipe_for(tiny_model_dir, tmp_path, "whole")), progress=False)
    recipe_file = tmp_path / "killed.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe_for(tiny_model_dir, tmp_path, "killed")))
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(recipe_file)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 240
    while not complete_checkpoints(ckpts) or int(complete_checkpoints(ckpts)[-1].name.split("-")[1]) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the training process never reached checkpoint-3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = RunDir(tmp_path / "killed")
    assert not run.adapter_dir.exists() and len(losses(run)) < 6
    resumed = train(build_recipe(yaml.safe_load(recipe_file.read_text())), progress=False, resume=True)
    got, want = losses(resumed.run), losses(reference.run)
    assert [s for s, _ in got] == [1, 2, 3, 4, 5, 6]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], abs=1e-5)
    assert (resumed.run.path / "eval.json").is_file() and resumed.run.adapter_dir.is_dir()


def test_resume_without_a_checkpoint_says_what_to_run_and_changes_nothing(tiny_model_dir, tmp_path):
    r = recipe_for(tiny_model_dir, tmp_path, "nockpt")
    r["train"]["save_every"] = 0
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(yaml.safe_dump(r))
    train(build_recipe(r), progress=False)
    before = {p: p.read_bytes() for p in (tmp_path / "nockpt").rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, ["train", str(recipe_file), "--resume"])
    assert result.exit_code == 2, result.output
    assert "holds no complete checkpoint" in result.output and "without --resume" in result.output
    assert {p: p.read_bytes() for p in (tmp_path / "nockpt").rglob("*") if p.is_file()} == before
    json.loads((tmp_path / "nockpt" / "eval.json").read_text())

"""Preference / reward / pretraining objectives on the tiny model (that each trains, reloads and evaluates is
tests/test_objective_matrix.py): DPO's loss falls on a fixed batch; NaN stops a TRL trainer with the step and the
last good checkpoint; the reference model is explicit; recipes the math does not allow stop before loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.objectives.callbacks import TrainingDiverged
from ftatlas.objectives.reward import load_reward_scorer
from ftatlas.pipeline import train
from ftatlas.recipe import RecipeError
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe
from tests.test_objective_matrix import objective_run

FAST = {"eval": {"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}}}


def run(tiny_model_dir: Path, tmp_path: Path, objective: dict, **over):
    over.setdefault("train", {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "log_every": 1, "precision": "fp32"})
    over.setdefault("data", {"builtin": "contacts", "max_length": 128, "max_train": 8})
    recipe = tiny_recipe(tiny_model_dir, tmp_path, objective=objective, **{**FAST, **over})
    return train(build_recipe(recipe), progress=False)


def losses(session) -> list[float]:
    return [r["loss"] for r in session.run.read_metrics() if "loss" in r]


def test_reference_is_explicit_adapter_or_frozen_copy(tiny_model_dir, tmp_path, shared_run, notes_file):
    lora = objective_run(shared_run, notes_file, "dpo")  # the objective matrix's LoRA run
    assert "starting adapter" in lora.run.read_json("objective.json")["reference"]
    full = run(tiny_model_dir, tmp_path, {"name": "dpo", "beta": 0.2}, method={"name": "full"})
    assert "frozen copy" in full.run.read_json("objective.json")["reference"]
    assert (full.run.model_dir / "config.json").is_file() and not full.run.adapter_dir.exists()


def test_dpo_loss_decreases_on_a_fixed_batch(tiny_model_dir, tmp_path):
    s = run(tiny_model_dir, tmp_path, {"name": "dpo", "beta": 0.5},
            data={"builtin": "contacts", "max_length": 128, "max_train": 4},
            train={"max_steps": 8, "batch_size": 4, "lr": 5e-3, "log_every": 1, "precision": "fp32",
                   "scheduler": "constant", "warmup": 0})
    got = losses(s)
    assert got[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1: -log sigmoid(0)
    assert got[-1] < got[0] - 0.05, got


def test_dpo_nan_loss_stops_naming_step_and_last_good_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    from trl import DPOTrainer

    original = DPOTrainer.compute_loss

    def poisoned(self, *a, **kw):
        loss = original(self, *a, **kw)
        return loss * float("nan") if self.state.global_step >= 2 else loss

    monkeypatch.setattr(DPOTrainer, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss \(nan\) at step 3.*checkpoint-2"):
        run(tiny_model_dir, tmp_path, {"name": "dpo"},
            train={"max_steps": 5, "batch_size": 2, "log_every": 1, "save_every": 1, "save_total_limit": 5,
                   "precision": "fp32"})
    run_dir = tmp_path / "tiny"
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()
    assert not (run_dir / "checkpoints" / "checkpoint-3").exists()
    assert not (run_dir / "adapter").exists()
    assert "error" in json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


def test_reward_model_trains_scores_and_evaluates(shared_run, notes_file):
    s = objective_run(shared_run, notes_file, "reward")  # the objective matrix's LoRA run
    ev = s.run.read_json("eval.json")
    assert set(ev["metrics"]) == {"pairwise_accuracy", "mean_margin"} and ev["n"] == 2
    assert set(ev["ci95"]) == {"pairwise_accuracy", "mean_margin"} and "mean_margin" in ev["scales"]
    assert "mean_margin" in (s.run.path / "report.md").read_text()  # on its own scale, not as a %
    cfg = json.loads((s.run.adapter_dir / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and "score" in cfg["modules_to_save"]  # the new head is saved
    score = load_reward_scorer(s.run.path)
    got = score(["Hi", [{"role": "user", "content": "Hi"}]], ["Hello", "Hello"])
    assert len(got) == 2 and got[0] == pytest.approx(got[1], abs=1e-5)  # a string prompt is a user message
    ex = ev["examples"][0]
    assert score([ex["prompt"]], [ex["reference"]])[0] == pytest.approx(ex["score_chosen"], abs=1e-3)
    with pytest.raises(ValueError, match="2 prompts and 1 completions"):
        score(["a", "b"], ["c"])
    result = CliRunner().invoke(app, ["eval", str(s.run.path)])
    assert result.exit_code == 0, result.output
    assert "pairwise_accuracy" in result.output


def test_reward_on_a_4bit_base(tiny_model_dir, tmp_path):
    s = run(tiny_model_dir, tmp_path, {"name": "reward"}, method={"name": "qlora", "r": 4, "alpha": 8})
    assert len(load_reward_scorer(s.run.path)(["q"], ["a"])) == 1


def test_reward_with_full_method_saves_a_reward_model(tiny_model_dir, tmp_path):
    s = run(tiny_model_dir, tmp_path, {"name": "reward"}, method={"name": "freeze", "top_n": 1})
    assert (s.run.model_dir / "config.json").is_file()
    assert json.loads((s.run.model_dir / "config.json").read_text())["architectures"] == [
        "LlamaForSequenceClassification"]
    assert len(load_reward_scorer(s.run.path)(["q"], ["a"])) == 1


def test_pretrain_packs_text_into_blocks_and_reports_perplexity(shared_run, notes_file):
    s = objective_run(shared_run, notes_file, "pretrain")  # the matrix run: block_size 16, a quarter held out
    blocks = s.run.read_json("objective.json")["blocks"]
    assert blocks["train"] >= 9  # 9 paragraphs of ~17 tokens each -> more blocks than documents
    ev = s.run.read_json("eval.json")
    assert ev["metrics"]["perplexity"] > 1 and 0 <= ev["metrics"]["next_token_accuracy"] <= 1
    assert s.run.adapter_dir.is_dir()


@pytest.mark.parametrize(("over", "needle"), [
    ({"objective": {"name": "reward"}, "method": {"name": "prefix"}}, "cannot train with method 'prefix'"),
    ({"objective": {"name": "kto"}, "train": {"batch_size": 1}}, "train.batch_size >= 2"),
    ({"objective": {"name": "dpo"}, "method": {"name": "adapter"}}, "fused LM-head output"),
    ({"objective": {"name": "orpo"}, "method": {"name": "prompt"}}, "virtual tokens"),
    ({"objective": {"name": "dpo", "loss": ["sigmoid", "ipo"], "loss_weights": [1.0]}}, "1 weights for 2 losses"),
    ({"objective": {"name": "dpo", "loss": "nope"}}, "objective.loss"),
])
def test_recipes_the_objective_cannot_run_stop_before_loading(tmp_path, over, needle):
    with pytest.raises(RecipeError, match=needle):
        build_recipe(tiny_recipe(Path("/nonexistent"), tmp_path, **over))


def test_pretrain_refuses_conversation_rows(tiny_model_dir, tmp_path, chat_file):
    from ftatlas.data.errors import DataError

    with pytest.raises(DataError, match="plain text"):
        run(tiny_model_dir, tmp_path, {"name": "pretrain"}, data={"builtin": None, "max_train": None,
                                                                 "train": str(chat_file)})


def test_dpo_on_a_pairs_file_then_eval_and_merge(tiny_model_dir, tmp_path):
    from ftatlas.data.builtin import contact_pairs
    from ftatlas.export.merge import merge_run

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p.to_json()) + "\n" for p in contact_pairs("train", 12)))
    s = run(tiny_model_dir, tmp_path, {"name": "dpo"},
            data={"builtin": None, "max_train": None, "train": str(pairs), "eval_split": 0.25, "max_length": 128})
    result = CliRunner().invoke(app, ["eval", str(s.run.path), "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    assert '"n": 3' in result.output  # the held-out pairs, generated against `chosen`
    assert merge_run(s.run.path).within_tolerance


@pytest.mark.parametrize(("objective", "method"), [
    ("dpo", {"name": "ia3"}), ("dpo", {"name": "prefix", "num_virtual_tokens": 4}), ("kto", {"name": "qlora", "r": 4}),
    ("orpo", {"name": "freeze", "top_n": 1}), ("simpo", {"name": "loha", "r": 4}), ("reward", {"name": "vera", "r": 4}),
])
def test_objectives_across_methods(tiny_model_dir, tmp_path, objective, method):
    s = run(tiny_model_dir, tmp_path, {"name": objective}, method=method)
    assert len(losses(s)) == 2 and s.run.weights_dir().is_dir()


def _random_pairs(n: int, seed: int) -> list[dict]:
    """Codes with a random preferred word: nothing generalises, so held-out DPO loss rises once pairs are learnt."""
    import random

    rng = random.Random(seed)
    words = ["amber", "birch", "cloud", "delta", "ember", "frost", "grove", "heron", "iris", "jade", "kelp", "lumen"]
    rows = []
    for _ in range(n):
        chosen, rejected = rng.sample(words, 2)
        rows.append({"prompt": [{"role": "user", "content": f"Code {rng.randrange(10**6)}?"}],
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rejected}]})
    return rows


def test_dpo_early_stopping_when_asked_keeps_the_best_held_out_loss(tiny_model_dir, tmp_path):
    train_file, eval_file = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    for path, rows in ((train_file, _random_pairs(16, 1)), (eval_file, _random_pairs(8, 2))):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = run(tiny_model_dir, tmp_path, {"name": "dpo", "beta": 0.5},
            data={"builtin": None, "max_train": None, "train": str(train_file), "eval": str(eval_file),
                  "max_length": 64},
            train={"max_steps": -1, "epochs": 12, "early_stopping": True, "eval_every": 2, "patience": 2,
                   "batch_size": 4, "lr": 3e-2, "scheduler": "constant", "warmup": 0, "log_every": 1,
                   "precision": "fp32"},
            eval={"max_examples": 8, "batch_size": 4, "decode": {"max_new_tokens": 2}})
    rows = s.run.read_metrics()
    kept = s.results["plan"]["kept"]
    curve = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r and "kept_step" not in r]
    during = curve[:-1]  # the last line scores the weights the run kept
    best_step, best = min(during, key=lambda c: c[1])
    assert kept["stopped_early"] and kept["step"] == best_step < kept["last_step"] < 48  # 12 epochs x 4 steps
    assert during[-1][1] > best  # it overfitted past the kept step
    assert curve[-1][1] == pytest.approx(best, rel=1e-4)  # and the trainer holds the best weights again


def test_preference_objectives_keep_auto_early_stopping_off_and_train_one_epoch(tiny_model_dir, tmp_path):
    s = run(tiny_model_dir, tmp_path, {"name": "orpo"}, train={"max_steps": -1, "batch_size": 4, "precision": "fp32"},
            data={"builtin": "contacts", "max_length": 128, "max_train": 8})
    budget = s.results["plan"]["budget"]
    assert not budget["early_stopping"] and budget["epochs"] == 1 and budget["eval_every"] == 0

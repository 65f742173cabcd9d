"""SFT from a streamed source (``streaming: true``): rows are read, templated and tokenized as training asks for
them (a bad row past what the steps read is never reached), the budget is ``max_steps`` or derived from
``max_train``, and an unknown length without either stops with what to set."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from ftatlas.pipeline import train
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe, write_jsonl

ROWS = [{"question": f"Shout {w}", "answer": w.upper()} for w in ("apple", "river", "stone", "cloud") * 275]
BAD = 1050  # past the first rows the pre-training checks read (data/stream.py SAMPLE_ROWS)


def recipe(tiny_model_dir: Path, tmp_path: Path, name: str, data: dict, **train) -> dict:
    rows = ROWS[:BAD] + [{"question": "", "answer": "never read"}] + ROWS[BAD + 1:]  # an invalid row
    path = tmp_path / "big.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    held = write_jsonl(tmp_path / "held.jsonl", [{"instruction": "Shout maple", "output": "MAPLE"}] * 2)
    source = {"path": str(path), "streaming": True, "columns": {"instruction": "question", "output": "answer"}}
    r = tiny_recipe(tiny_model_dir, tmp_path / "runs", data={"builtin": None, "train": source, "eval": str(held),
                                                              "max_train": None, "max_length": 64} | data,
                    train={"batch_size": 4, "packing": "padding_free"} | train,
                    eval={"max_examples": 1, "batch_size": 1, "decode": {"max_new_tokens": 2}})
    r["output"] = {"dir": str(tmp_path / "runs"), "name": name}
    return r


def losses(session) -> list[float]:
    return [r["loss"] for r in session.run.read_metrics() if "loss" in r]


def test_streamed_sft_reads_rows_as_it_trains(tiny_model_dir, tmp_path):
    s = train(build_recipe(recipe(tiny_model_dir, tmp_path, "steps", {}, max_steps=3)), progress=False)
    assert len(losses(s)) == 3  # 12 rows trained on; the invalid row was never read
    stats = s.results["fit"].data_stats["train"]
    assert 12 <= stats["rows"] < 100 and stats["loss_tokens"] > 0  # counted while training read them
    assert (s.run.path / "eval.json").is_file()


def test_streamed_budget_from_max_train_or_a_clear_stop(tiny_model_dir, tmp_path):
    s = train(build_recipe(recipe(tiny_model_dir, tmp_path, "derived", {"max_train": 8}, max_steps=-1,
                                  epochs=2)), progress=False)
    assert len(losses(s)) == 4  # 2 epochs x 8 rows / batch 4
    assert "4 steps over data.max_train=8 streamed rows" in s.results["plan"]["budget"]["reason"]
    with pytest.raises(ValueError, match=r"data.train is streamed .* set train.max_steps, or data.max_train"):
        train(build_recipe(recipe(tiny_model_dir, tmp_path, "unknown", {}, max_steps=-1)), progress=False)
    with pytest.raises(ValueError, match=r"packing=best_fit .* streamed"):
        train(build_recipe(recipe(tiny_model_dir, tmp_path, "bestfit", {}, max_steps=2, packing="best_fit")),
              progress=False)

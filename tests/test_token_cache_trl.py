"""The tokenization cache for objectives on TRL trainers (data.cache_tokenized): their rows are file-backed, so a
second run on the same rows, tokenizer and settings reads TRL's tokenized Arrow files instead of writing new ones;
another chat template tokenizes again (no stale cache), and with the cache off nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftatlas.pipeline import train
from ftatlas.resolve import build_recipe
from tests.conftest import tiny_recipe


def text_file(tmp_path: Path) -> dict:
    """A plain-text corpus for pretrain, split 75/25."""
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(f"Paragraph {i}: the river runs past the old mill and the bridge." for i in range(8)))
    return {"builtin": None, "train": str(path), "eval_split": 0.25, "max_length": 64}


def files(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}


def run(tiny_model_dir: Path, tmp_path: Path, name: str, objective: str, template: str | None = None,
        **data) -> None:
    base = text_file(tmp_path) if objective == "pretrain" else {"builtin": "contacts", "max_length": 128,
                                                                "max_train": 8}
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "runs", objective={"name": objective},
                         data=base | {"cache_dir": str(tmp_path / "cache")} | data,
                         train={"max_steps": 1, "batch_size": 2, "precision": "fp32"},
                         eval={"max_examples": 1, "batch_size": 1, "decode": {"max_new_tokens": 2}},
                         output={"dir": str(tmp_path / "runs"), "name": name})
    if template:
        recipe["model"]["template"] = template
    train(build_recipe(recipe), progress=False)


@pytest.mark.parametrize("objective", ["dpo", "pretrain"])
def test_second_run_reads_the_trainers_tokenized_files(tiny_model_dir, tmp_path, objective, capfd):
    cache = tmp_path / "cache"
    run(tiny_model_dir, tmp_path, "cold", objective)
    cold = files(cache)
    assert any(n.startswith("rows-") for n in cold) and any(n.startswith("cache-") for n in cold), cold
    assert "Tokenizing train dataset" in capfd.readouterr().err  # TRL's own tokenizing map
    run(tiny_model_dir, tmp_path, "warm", objective)
    assert "Tokenizing" not in capfd.readouterr().err  # a cache hit: TRL's map read the Arrow file
    assert {n: t for n, t in files(cache).items() if n in cold} == cold  # nothing rewritten
    if objective != "dpo":
        return  # what follows is the same code path for every TRL objective (trl_glue.as_dataset)
    run(tiny_model_dir, tmp_path, "chatml", objective, template="chatml")
    assert "Tokenizing train dataset" in capfd.readouterr().err  # the tokenizer (its template) is part of the key
    before = files(cache)
    run(tiny_model_dir, tmp_path, "off", objective, cache_tokenized=False)
    assert "Tokenizing train dataset" in capfd.readouterr().err and files(cache) == before

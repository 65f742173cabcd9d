"""The context axis through runs: recipe validation, method none baselines, RAG + LoRA, eval/chat reuse."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import tiny_recipe
from typer.testing import CliRunner

from ftatlas.chat import ChatSession
from ftatlas.cli import app
from ftatlas.context.retrieval.ingest import ingest
from ftatlas.pipeline import train
from ftatlas.recipe import DecodeSpec, RecipeError
from ftatlas.resolve import build_recipe

runner = CliRunner()


def test_recipe_context_block_validates_against_the_mode(tiny_model_dir, tmp_path):
    r = build_recipe(tiny_recipe(tiny_model_dir, tmp_path, context={"mode": "few_shot", "k": 2}))
    assert r.context.name == "few_shot" and r.context_params().k == 2
    assert build_recipe(tiny_recipe(tiny_model_dir, tmp_path, context="few_shot")).context.name == "few_shot"
    assert build_recipe(tiny_recipe(tiny_model_dir, tmp_path)).context.name == "zero_shot"  # default
    with pytest.raises(RecipeError, match=r"context.index: unknown key; allowed: .*selection"):
        build_recipe(tiny_recipe(tiny_model_dir, tmp_path, context={"mode": "few_shot", "index": "x"}))
    with pytest.raises(RecipeError, match="unknown context 'retrieval'; known: few_shot, rag, zero_shot"):
        build_recipe(tiny_recipe(tiny_model_dir, tmp_path, context="retrieval"))
    with pytest.raises(RecipeError, match="context.k"):
        build_recipe(tiny_recipe(tiny_model_dir, tmp_path, context={"mode": "rag", "index": "i", "k": 0}))


def test_method_none_few_shot_is_a_run_that_costs_prompt_tokens(tiny_model_dir, tmp_path):
    zero = train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method="none",
                                          output={"name": "zero"})), progress=False)
    few = train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path, method="none", output={"name": "few"},
                                         context={"mode": "few_shot", "k": 3})), progress=False)
    z, f = (json.loads((s.run.path / "eval.json").read_text()) for s in (zero, few))
    assert f["context"] == "few_shot" and z["context"] == "zero_shot"
    assert f["prompt_tokens_per_request"] > 2 * z["prompt_tokens_per_request"]  # three solved examples per call
    assert len(f["examples"][0]["examples"]) == 3
    assert set(f["ci95"]) == set(f["metrics"])  # every metric carries its bootstrap interval
    assert all(lo <= f["metrics"][m] <= hi for m, (lo, hi) in f["ci95"].items())
    assert not (few.run.path / "adapter").exists() and not (few.run.path / "model").exists()
    saved = yaml.safe_load((few.run.path / "recipe.yaml").read_text())
    assert saved["method"]["name"] == "none" and saved["context"] == {"name": "few_shot", "k": 3}
    assert "context: `few_shot`" in (few.run.path / "report.md").read_text()


@pytest.fixture
def index(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "people.md").write_text("Ana Silva is 34 and lives in Lisbon.\n\nBruno Okafor is 51 and lives in Oslo.")
    ingest([str(docs)], tmp_path / "idx", progress=False)
    return tmp_path / "idx"


def test_lora_with_rag_trains_on_retrieved_prompts_and_eval_chat_reuse_the_context(tiny_model_dir, tmp_path,
                                                                                     index, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = build_recipe(tiny_recipe(tiny_model_dir, tmp_path / "runs", output={"name": "lora-rag"},
                                      context={"mode": "rag", "index": "idx", "k": 1, "train": True}))
    session = train(recipe, progress=False)
    assert all("[1] (people.md#0)" in r.messages[-2].content for r in session.splits.train)
    run = session.run.path
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    assert saved["context"]["index"] == str(index.resolve())  # absolute: chat works from anywhere
    ev = json.loads((run / "eval.json").read_text())
    assert ev["context"] == "rag" and ev["examples"][0]["passages"] == ["people.md#0"]

    monkeypatch.chdir("/")
    res = runner.invoke(app, ["eval", str(run), "--max-examples", "2", "--max-new-tokens", "4",
                              "--out", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e.json").read_text())["context"] == "rag"
    res = runner.invoke(app, ["eval", str(run), "--max-examples", "2", "--max-new-tokens", "4", "--context",
                              "zero_shot", "--out", str(tmp_path / "z.json")])
    assert res.exit_code == 0, res.output
    z = json.loads((tmp_path / "z.json").read_text())
    assert z["context"] == "zero_shot" and z["prompt_tokens_per_request"] < ev["prompt_tokens_per_request"]

    chat = ChatSession.open(str(run), DecodeSpec(max_new_tokens=4))
    chat.reply("Where does Bruno live?")
    assert chat.last_info["passages"] == ["people.md#0"]
    assert chat.history[0].content == "Where does Bruno live?"  # history keeps the user's words


def test_cli_context_options_are_checked(tiny_model_dir, tmp_path):
    res = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", "x.jsonl", "--context", "rag"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["chat", str(tiny_model_dir), "-p", "hi", "--context", "rag", "--ctx", "k=0"])
    assert res.exit_code == 2 and "context 'rag'" in res.output and "context.k" in res.output


def test_rag_cli_ingest_query_eval_info(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fleet.md").write_text("The Albatross is a cargo ship built in Quorva.\n\nThe Bellwether is a ferry.")
    (docs / "bad.txt").write_bytes(b"\x00\x01\x02")
    idx = tmp_path / "idx"
    res = runner.invoke(app, ["rag", "ingest", str(docs), "--index", str(idx)])
    assert res.exit_code == 0, res.output
    assert "1 added" in res.output and "1 failed" in res.output
    assert "bad.txt: binary file" in res.output
    again = runner.invoke(app, ["rag", "ingest", str(docs), "--index", str(idx)])
    assert "2 unchanged" in again.output and "0 chunks embedded" in again.output  # the bad file too: same bytes
    res = runner.invoke(app, ["rag", "query", str(idx), "Where was the Albatross built?", "-k", "1"])
    assert res.exit_code == 0 and "fleet.md#0" in res.output and "Quorva" in res.output
    probes = tmp_path / "probes.jsonl"
    probes.write_text(json.dumps({"question": "Where was the Albatross built?", "answer": "Quorva"}) + "\n")
    res = runner.invoke(app, ["rag", "eval", str(idx), "--data", str(probes), "-k", "1"])
    assert res.exit_code == 0 and "recall@1" in res.output and "100.0" in res.output
    res = runner.invoke(app, ["rag", "info", str(idx)])
    assert res.exit_code == 0 and '"chunks": 1' in res.output and '"failed_files": 1' in res.output
    res = runner.invoke(app, ["rag", "query", str(tmp_path / "nope"), "q"])
    assert res.exit_code == 2 and "is not a RAG index" in res.output
    res = runner.invoke(app, ["context", "list"])
    assert "rag:" in res.output and "index=<required>" in res.output

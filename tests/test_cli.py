"""The CLI entry points, driven as a user would (typer's runner), on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.quickstart import quickstart_recipe
from ftatlas.resolve import load_recipe
from tests.conftest import tiny_recipe, write_jsonl

runner = CliRunner()
EXAMPLES = sorted(p for p in Path(__file__).parent.parent.joinpath("examples").rglob("*.yaml")
                  if not p.name.startswith("arena")  # arena files hold cells, not one recipe: test_arena.py
                  and p.parent.name != "harness"  # lm-eval task files: tests/test_harness.py
                  and not p.name.startswith("mix"))  # data mixture specs: tests/test_data_tools.py


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_every_shipped_example_validates():
    assert EXAMPLES
    res = invoke("config", "validate", *EXAMPLES)
    assert res.exit_code == 0, res.output
    assert res.output.count(": OK") == len(EXAMPLES)


def test_quickstart_yaml_matches_the_quickstart_command():
    assert load_recipe(Path("examples/quickstart.yaml")) == quickstart_recipe()


def test_bad_recipe_exits_2_with_the_field_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"builtin": "contacts"}, "train": {"scheduler": "zigzag"}}))
    res = invoke("config", "validate", bad)
    assert res.exit_code == 2
    assert "train.scheduler" in res.output and "cosine" in res.output and "Traceback" not in res.output


def test_methods_list_comes_from_the_registry():
    res = invoke("methods", "list")
    assert res.exit_code == 0
    for name in ("full", "freeze", "lora"):
        assert f"{name}:" in res.output
    assert "use_dora=False" in res.output
    assert "declares: not mergeable, not supports_packing, prompt_learning, prepends_tokens, not score_head" \
        in res.output  # prompt tuning's capability attributes


def test_data_validate_reports_file_line_and_field(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": "yo"}]},
                                           {"messages": [{"role": "robot", "content": "x"}]}])
    res = invoke("data", "validate", f)
    assert res.exit_code == 2
    assert "d.jsonl:2" in res.output and "messages[0].role" in res.output


def test_data_inspect(chat_file, tiny_model_dir):
    res = invoke("data", "inspect", chat_file, "--model", tiny_model_dir)
    assert res.exit_code == 0, res.output
    assert "rows: 24" in res.output and "[[APPLE" in res.output and "loss tokens:" in res.output


def test_train_eval_chat_commands(tiny_model_dir, tmp_path, chat_file):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_model_dir, tmp_path / "runs")))
    res = invoke("train", recipe, "train.max_steps=2", "method.r=2")
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "tiny"
    assert yaml.safe_load((run / "recipe.yaml").read_text())["method"]["r"] == 2  # override was applied
    assert "json_match" in res.output
    res = invoke("eval", run, "--data", chat_file, "--max-examples", "2", "--max-new-tokens", "4")
    assert res.exit_code == 0, res.output
    assert json.loads((run / "eval-chat.json").read_text())["n"] == 2
    res = invoke("chat", run, "--prompt", "hi", "--max-new-tokens", "3", "--beams", "2")
    assert res.exit_code == 0, res.output
    res = invoke("chat", run, "--prompt", "hi", "--max-new-tokens", "3", "--sample", "--temperature", "0.8",
                 "--top-k", "5", "--top-p", "0.9", "--repetition-penalty", "1.2")
    assert res.exit_code == 0, res.output


def test_unknown_model_is_a_clear_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name": "no-such-model"}, "data": {"builtin": "contacts"},
                                      "output": {"dir": str(tmp_path)}}))
    res = invoke("train", recipe)
    assert res.exit_code == 2 and "no-such-model" in res.output and "Traceback" not in res.output


def test_chat_interactive_reads_stdin(tiny_model_dir):
    res = runner.invoke(app, ["chat", str(tiny_model_dir), "--max-new-tokens", "2"], input="hello\n/reset\nbye\n\n")
    assert res.exit_code == 0, res.output
    assert res.output.count("assistant>") == 2


def test_eval_set_reaches_the_eval_block(tiny_model_dir, tmp_path, chat_file):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["name"]}))
    out = tmp_path / "eval.json"
    res = invoke("eval", str(tiny_model_dir), "--data", chat_file, "--metrics", "json_schema", "--max-examples", "2",
                 "--max-new-tokens", "4", "--eval-set", f"json_schema={schema}", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "json_schema" in json.loads(out.read_text())["metrics"]
    missing = invoke("eval", str(tiny_model_dir), "--data", chat_file, "--metrics", "json_schema",
                     "--eval-set", f"json_schema={tmp_path / 'nope.json'}")
    assert missing.exit_code == 2 and "nope.json" in missing.output

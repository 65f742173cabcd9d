"""Bad inputs a new user tries, each through the CLI: a clear error (file, line, field, what to do), exit code 2,
no traceback, nothing created. The table in docs/bad-input.md is checked against these cases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.recipe import build_recipe, dump_recipe
from tests.conftest import tiny_recipe

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"


@dataclass
class Case:
    id: str
    setup: Callable[[Path, Path], list[str]]  # (tmp dir, tiny model dir) -> CLI args
    error: str  # what the doc shows: the error with the tmp dir written as DIR
    exit_code: int = 2


def recipe_file(tmp: Path, model_dir: Path, **over) -> Path:
    r = tiny_recipe(model_dir, tmp / "runs", **over)
    (tmp / "r.yaml").write_text(yaml.safe_dump(r))
    return tmp / "r.yaml"


def unknown_alias(tmp: Path, model: Path) -> list[str]:
    return ["config", "validate", str(recipe_file(tmp, model, model={"name": "smollm2-1.7b"}))]


def unknown_alias_train(tmp: Path, model: Path) -> list[str]:
    return ["train", str(recipe_file(tmp, model, model={"name": "smollm2-1.7b"}))]


def missing_run(tmp: Path, model: Path) -> list[str]:
    (tmp / "rd").mkdir()
    return ["eval", "rd/nope"]


def corrupt_adapter(tmp: Path, model: Path) -> list[str]:
    run = tmp / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "recipe.yaml").write_text(dump_recipe(build_recipe(tiny_recipe(model, tmp))))
    (run / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA",\n  "r": 8,,\n}')
    return ["eval", str(run)]


def latin1(tmp: Path, model: Path) -> list[str]:
    (tmp / "latin1.jsonl").write_bytes('{"text": "ok"}\n{"text": "caf\u00e9"}\n'.encode("latin-1"))
    return ["data", "validate", str(tmp / "latin1.jsonl")]


def reward_missing_function(tmp: Path, model: Path) -> list[str]:
    (tmp / "rw.py").write_text("def other(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    objective = {"name": "grpo", "rewards": [{"name": f"{tmp}/rw.py:mine"}]}
    return ["config", "validate", str(recipe_file(tmp, model, objective=objective, data={"builtin": "ages"}))]


def judge_over_http(tmp: Path, model: Path) -> list[str]:
    judge = {"model": "m", "base_url": "http://judge.example.com/v1", "api_key_env": "HOME"}
    return ["train", str(recipe_file(tmp, model, eval={"metrics": ["judge_score"], "judge": judge}))]


def resume_without_checkpoint(tmp: Path, model: Path) -> list[str]:
    (tmp / "runs" / "tiny").mkdir(parents=True)
    f = recipe_file(tmp, model)
    (tmp / "runs" / "tiny" / "recipe.yaml").write_text(f.read_text())
    return ["train", str(f), "--resume"]


def text_pairs_exact_match(tmp: Path, model: Path) -> list[str]:
    (tmp / "pairs.jsonl").write_text('{"prompt": "2+2=", "chosen": " 4", "rejected": " 5"}\n' * 4)
    data = {"builtin": None, "max_train": None, "train": str(tmp / "pairs.jsonl"), "eval": str(tmp / "pairs.jsonl")}
    return ["train", str(recipe_file(tmp, model, objective={"name": "dpo"}, data=data,
                                     eval={"metrics": ["exact_match"]}))]


CASES = [
    Case("unknown model alias (config validate)", unknown_alias,
         "model 'smollm2-1.7b' is not an alias (smollm2-135m), an existing path, or a hub id (org/name)"),
    Case("unknown model alias (train)", unknown_alias_train,
         "model 'smollm2-1.7b' is not an alias (smollm2-135m), an existing path, or a hub id (org/name)"),
    Case("missing relative run path", missing_run,
         "rd/nope does not exist (no such run directory, model dir or file in rd/)"),
    Case("corrupt adapter_config.json", corrupt_adapter,
         "DIR/run/adapter/adapter_config.json: not valid JSON (line 2, column 10: Expecting property name enclosed "
         "in double quotes); restore it from the run's last checkpoint (checkpoints/checkpoint-N/) or train the "
         "run again"),
    Case("latin-1 data file", latin1,
         "DIR/latin1.jsonl:2: not valid UTF-8 (byte 0xe9 at column 14); the file is in another encoding (often "
         "latin-1 / cp1252): re-save it as UTF-8, e.g. `iconv -f cp1252 -t utf-8 latin1.jsonl > "
         "latin1.utf8.jsonl`"),
    Case("reward file.py:function that does not exist", reward_missing_function,
         "DIR/r.yaml: invalid recipe objective 'grpo': objective.rewards.0: reward function 'DIR/rw.py:mine': "
         "DIR/rw.py has no attribute 'mine'"),
    Case("judge API key over plain http", judge_over_http,
         "eval.judge.base_url: http://judge.example.com/v1 is plain http to another machine, and the API key in "
         "$HOME would cross the network unencrypted; use https, or set eval.judge.allow_insecure=true to send it "
         "anyway"),
    Case("--resume with no checkpoint", resume_without_checkpoint,
         "cannot resume: DIR/runs/tiny/checkpoints holds no complete checkpoint (train.save_every sets how often "
         "one is saved); train afresh (without --resume; add output.overwrite=true to replace what is there)"),
    Case("standard-form pairs scored with exact_match", text_pairs_exact_match,
         "DIR/pairs.jsonl:1: a plain-text row has no prompt/answer to score with exact_match; plain text is scored "
         "by: perplexity, preference_accuracy, preference_margin"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_a_clear_error(case, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = case.setup(tmp_path, tiny_model_dir)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(app, args)
    text = " ".join(result.output.split()).replace(str(tmp_path), "DIR")
    assert "Traceback" not in text
    assert result.exit_code == case.exit_code, text
    assert f"error: {case.error}" in text, text
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert after == before  # nothing created or rewritten (no run dir, no recipe.yaml)


def doc_rows() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if len(cells) == 4 and cells[0] not in ("input", "---"):
            error = cells[2]
            error = error[3:-3] if error.startswith("`` ") else error.strip("`")  # ``...`` when it holds a `
            rows[cells[0]] = (error, cells[3])
    return rows


def test_the_doc_table_lists_every_case_with_its_error_and_exit_code():
    rows = doc_rows()
    for case in CASES:
        assert case.id in rows, f"docs/bad-input.md has no row for {case.id!r}"
        error, code = rows[case.id]
        assert error == case.error and code == str(case.exit_code), case.id


def test_config_validate_does_not_run_reward_code(tmp_path, tiny_model_dir, monkeypatch):
    marker = tmp_path / "ran"
    (tmp_path / "rw.py").write_text(f"open({str(marker)!r}, 'w').close()\n\ndef mine(prompts, completions, **kw):\n"
                                    "    return [0.0] * len(completions)\n")
    objective = {"name": "grpo", "rewards": [{"name": f"{tmp_path}/rw.py:mine"}]}
    f = recipe_file(tmp_path, tiny_model_dir, objective=objective, data={"builtin": "ages"})
    result = CliRunner().invoke(app, ["config", "validate", str(f)])
    assert result.exit_code == 0, result.output
    assert not marker.exists()  # the file was read, not run
    from ftatlas.rewards.base import RewardSpec

    RewardSpec(name=f"{tmp_path}/rw.py:mine").build()  # a run imports it
    assert marker.exists()


def test_judge_key_goes_to_https_and_loopback_or_with_allow_insecure(monkeypatch):
    from ftatlas.evaluate.judge import check_key_transport
    from ftatlas.recipe import JudgeSpec

    for url in ("https://api.example.com/v1", "http://127.0.0.1:8000/v1", "http://localhost/v1", "http://[::1]/v1"):
        check_key_transport(JudgeSpec(model="m", base_url=url, api_key_env="HOME"))
    check_key_transport(JudgeSpec(model="m", base_url="http://10.0.0.5/v1", api_key_env="HOME", allow_insecure=True))
    check_key_transport(JudgeSpec(model="m", base_url="http://10.0.0.5/v1"))  # no key, nothing to leak
    with pytest.raises(ValueError, match="plain http to another machine"):
        check_key_transport(JudgeSpec(model="m", base_url="http://10.0.0.5/v1", api_key_env="HOME"))


def test_rag_ingest_names_every_file_it_skips_and_keeps_pypdf_quiet(tmp_path, capfd):
    from ftatlas.context.retrieval.documents import DocumentError, read_documents, skipped_files

    docs = tmp_path / "docs"
    (docs / ".git").mkdir(parents=True)
    (docs / "a.md").write_text("hello")
    (docs / "model.bin").write_bytes(b"\x00\x01")
    (docs / ".git" / "HEAD").write_text("ref")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer\n%%EOF")
    assert skipped_files([docs]) == {str(docs / ".git" / "HEAD"): "hidden file or folder",
                                     str(docs / "model.bin"): "unsupported file type '.bin'; supported: .jsonl, "
                                                              ".markdown, .md, .pdf, .rst, .txt"}
    with pytest.raises(DocumentError, match=r"broken\.pdf: (unreadable PDF|the PDF has no)"):
        read_documents(docs / "broken.pdf")
    assert capfd.readouterr().err == ""  # pypdf's warnings went into the error, not onto stderr

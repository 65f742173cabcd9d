"""The UI's JSON API without a browser: validation errors per field, run folders read defensively, the job queue's
progress, the API key rule, and chat through ftatlas serve's API on the tiny model."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("fastapi", reason="the [ui] extra is not installed (pip install 'ftatlas[ui]')")
from fastapi.testclient import TestClient  # noqa: E402

from ftatlas.cli import app as cli  # noqa: E402
from ftatlas.ui.app import create_app  # noqa: E402
from ftatlas.ui.forms import field_errors  # noqa: E402
from ftatlas.ui.jobs import progress  # noqa: E402


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(tmp_path / "runs", tmp_path / "arena", cwd=tmp_path)) as c:
        yield c


def fake_run(root, name, metrics_lines, eval_json=None):
    run = root / name
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"model": {"name": "m"}, "data": {"builtin": "contacts"},
                                                     "method": {"name": "lora", "r": 4}}))
    (run / "metrics.jsonl").write_text("\n".join(metrics_lines) + "\n")
    if eval_json is not None:
        (run / "eval.json").write_text(json.dumps(eval_json))
    return run


def test_validation_errors_are_keyed_by_field_path(client):
    res = client.post("/api/validate", json={"data": {"builtin": "contacts"}, "train": {"lr": 5, "bogus": 1},
                                             "method": {"name": "lora", "r": 0}}).json()
    assert not res["ok"]
    assert set(res["errors"]) == {"train.lr", "train.bogus", "method.r"}
    assert "less than 1" in res["errors"]["train.lr"][0]
    assert res["errors"]["train.bogus"][0].startswith("unknown key; allowed: epochs")
    ok = client.post("/api/validate", json={"data": {"builtin": "contacts"}, "train": {"lr": ""}}).json()
    assert ok == {"ok": True, "errors": {}}  # a blank form field means "the default"


def test_launch_refuses_an_invalid_recipe_and_queues_nothing(client):
    res = client.post("/api/launch", json={"data": {}, "method": {"name": "nope"}})
    assert res.status_code == 422
    errors = res.json()["errors"]
    assert "unknown method 'nope'" in errors["method"][0] and "set data.builtin" in errors["data"][0]
    assert client.get("/api/jobs").json() == []


def test_field_errors_keeps_unplaced_lines():
    assert field_errors("form: invalid recipe\nsomething general") == {"": ["something general"]}


def test_runs_are_read_defensively(client, tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "good", ['{"step": 1, "loss": 2.0, "lr": 0.001}', '{"step": 2, "loss": 1.5'],
             {"metrics": {"exact_match": 0.5}, "ci95": {"exact_match": [0.25, 0.75]}, "n": 4,
              "examples": [{"prompt": "p", "reference": "r", "prediction": "a b"}]})
    fake_run(runs, "other", [], {"metrics": {}, "n": 4, "examples": [{"prompt": "p", "prediction": "a c"}]})
    rows = {r["name"]: r for r in client.get("/api/runs").json()}
    assert rows["good"]["status"] == "done" and rows["good"]["last_loss"] == 2.0
    assert any("metrics.jsonl:2: not JSON" in p for p in rows["good"]["problems"])  # a half-written last line
    detail = client.get("/api/runs/good").json()
    assert [c["step"] for c in detail["curves"]] == [1]
    assert client.get("/api/compare", params={"a": "good", "b": "other"}).json() == [
        {"prompt": "p", "reference": "r", "a": "a b", "b": "a c"}]
    assert client.get("/api/runs/..%2Fruns").status_code == 404
    res = client.post("/api/runs/good/resume")
    assert res.status_code == 400 and "no checkpoint" in res.json()["error"]


def test_progress_and_eta_come_from_the_trainers_bar(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("loading ...\rtraining:  50%|#####     | 1/2 [00:03<00:03,  3.1s/step, loss=2.1]\r"
                   "training: 100%|##########| 2/2 [00:06<00:00,  3.0s/step, loss=1.9]\n")
    assert progress(log) == {"step": 2, "total": 2, "elapsed": "00:06", "eta": "00:00"}
    assert progress(tmp_path / "missing.log") == {}


def test_arena_cell_that_is_not_json_is_a_failed_row(client, tmp_path):
    cells = tmp_path / "arena" / "a" / "cells"
    cells.mkdir(parents=True)
    (cells / "x.json").write_text("{broken")
    res = client.get("/api/arenas/a").json()
    assert res["table"][0]["verdict"].startswith("failed:") and "unreadable" in res["table"][0]["verdict"]
    assert client.get("/api/arenas/a/plots/secret.txt").status_code == 404


def test_api_key_is_required_when_set(tmp_path):
    with TestClient(create_app(tmp_path / "runs", tmp_path / "arena", api_key="s3cret")) as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        first = c.get("/?key=s3cret")
        assert first.status_code == 200 and "ftatlas_ui_key" in first.cookies
        assert c.get("/api/runs").status_code == 200  # the cookie from ?key= carries it


def test_cli_refuses_a_public_address_without_a_key():
    res = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "--api-key-env" in res.output
    res = CliRunner().invoke(cli, ["ui", "--api-key-env", "FTATLAS_TEST_UNSET_VAR"])
    assert res.exit_code == 2 and "unset or empty" in res.output


def test_chat_goes_through_serve_for_a_run_launched_after_start_up(client, tmp_path, tiny_model_dir):
    from conftest import tiny_recipe

    from ftatlas.pipeline import train
    from ftatlas.recipe import build_recipe

    assert client.get("/v1/models").json()["data"] == []
    fast = {"train": {"max_steps": 2, "batch_size": 2, "precision": "fp32"}, "data": {"builtin": "contacts",
            "max_length": 64, "max_train": 4}, "eval": {"max_examples": 2, "decode": {"max_new_tokens": 4}}}
    train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path / "runs", output={"name": "later"}, **fast)),
          progress=False)
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["later"]["ftatlas"]["loaded"] is False  # serve's app, listing what the runs folder holds
    msgs = [{"role": "user", "content": "hi"}]
    res = client.post("/v1/chat/completions", json={"model": "later", "max_tokens": 5, "messages": msgs})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]  # the random tiny model may stop at once: the answer can be empty, never over 5 tokens
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    with client.stream("POST", "/v1/chat/completions", json={"model": "later", "max_tokens": 5, "messages": msgs,
                                                             "stream": True}) as stream:
        events = [line.removeprefix("data: ") for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in map(json.loads, events[:-1]))
    assert streamed == body["choices"][0]["message"]["content"]  # greedy: the same answer, streamed
    ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
    assert {"later", str(tiny_model_dir)} <= ids  # the loaded run and its base (answers with no adapter)
    bad = client.post("/v1/chat/completions", json={"model": "nope", "messages": msgs})
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "model_not_found"


def test_stop_ends_a_running_job_and_drops_a_queued_one(tmp_path, tiny_model_dir):
    from ftatlas.ui.jobs import JobQueue

    queue = JobQueue(tmp_path / "runs", cwd=tmp_path)
    recipe = {"model": {"name": str(tiny_model_dir)}, "data": {"builtin": "contacts", "max_length": 64},
              "train": {"max_steps": 10_000, "batch_size": 2, "precision": "fp32"},
              "output": {"dir": str(tmp_path / "runs"), "name": "long"}}
    running = queue.submit(recipe)
    waiting = queue.submit(recipe | {"output": {"dir": str(tmp_path / "runs"), "name": "next"}})
    with pytest.raises(ValueError, match="already has a queued or running job"):
        queue.submit(recipe)
    for _ in range(200):
        if running.state == "running":
            break
        time.sleep(0.05)
    assert queue.stop(waiting.id).state == "stopped"
    queue.stop(running.id)
    for _ in range(600):
        if running.state not in ("running", "stopping"):
            break
        time.sleep(0.05)
    assert running.state == "stopped" and running.returncode != 0
    assert waiting.started is None  # a dropped job never starts
    queue.close()


def test_decision_map_layout_puts_yes_leaves_beside_their_question():
    from ftatlas.ui.advise_view import map_layout

    m = map_layout(["A", "B", "D", "F", "G", "O"])
    at = {n["id"]: (n["layer"], n["col"]) for n in m["nodes"]}
    assert [k for k, (_, col) in sorted(at.items(), key=lambda kv: kv[1]) if col == 0] == list("ABDFHJLN")
    assert at["C"] == (at["B"][0], 1) and at["G"] == (at["F"][0], 1) and at["M"] == (at["L"][0], 1)
    assert len({v for v in at.values()}) == len(at)  # no two nodes in one place
    assert {n["id"] for n in m["nodes"] if n["taken"]} == {"A", "B", "D", "F", "G", "O"}
    assert {(e["from"], e["to"]) for e in m["edges"] if e["taken"]} == {("A", "B"), ("B", "D"), ("D", "F"),
                                                                       ("F", "G"), ("G", "O")}


def test_launch_refuses_an_existing_run_name(client, tmp_path):
    fake_run(tmp_path / "runs", "taken", [])
    res = client.post("/api/launch", json={"data": {"builtin": "contacts"}, "output": {"name": "taken"}})
    assert res.status_code == 422 and "exists" in res.json()["errors"]["output.name"][0]


def test_log_tail_keeps_a_progress_bar_once(tmp_path):
    from ftatlas.ui.jobs import log_tail

    log = tmp_path / "x.log"
    log.write_text("model tiny\rtraining:   0%|   | 1/9 [00:01<00:08]\rtraining:  22%|#  | 2/9 [00:02<00:07]\nnext\n")
    assert log_tail(log) == "model tiny\ntraining:  22%|#  | 2/9 [00:02<00:07]\nnext"


def test_resume_sets_aside_a_checkpoint_cut_short_by_a_stop(tmp_path):
    from ftatlas.ui.runs_view import complete_checkpoints, set_aside_incomplete

    run = fake_run(tmp_path, "r", [])
    (run / "checkpoints" / "checkpoint-3").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (run / "checkpoints" / "checkpoint-6").mkdir()  # killed before trainer_state.json was written
    assert [p.name for p in complete_checkpoints(run)] == ["checkpoint-3"]
    assert set_aside_incomplete(run) == ["checkpoint-6"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-3", "incomplete-checkpoint-6"]


def _wait_job(client, job_id, seconds=300):
    for _ in range(int(seconds / 0.2)):
        job = next(j for j in client.get("/api/jobs").json() if j["id"] == job_id)
        if job["state"] not in ("queued", "running", "stopping"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}: {job['log_tail']}")


def test_export_formats_offer_quants_or_say_why_not(client, monkeypatch, tmp_path):
    import importlib.metadata
    import sys

    formats = {f["name"]: f for f in client.get("/api/export/formats").json()}
    assert {"safetensors", "gguf", "bnb-4bit", "bnb-8bit"} <= set(formats)
    assert formats["safetensors"]["quants"] == ["bf16", "f16", "f32"] and formats["safetensors"]["unavailable"] is None
    version = importlib.metadata.version

    def no_bnb(name):  # a machine without bitsandbytes
        if name == "bitsandbytes":
            raise importlib.metadata.PackageNotFoundError(name)
        return version(name)

    monkeypatch.setattr(importlib.metadata, "version", no_bnb)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # no llama.cpp converters under <prefix>/share/llama.cpp
    formats = {f["name"]: f for f in client.get("/api/export/formats").json()}
    assert formats["bnb-4bit"]["unavailable"].startswith("--to bnb-4bit needs bitsandbytes>=0.46")
    assert formats["bnb-4bit"]["quants"] == []  # greyed out: nothing to pick
    assert "converters are not installed" in formats["gguf"]["unavailable"]
    fake_run(tmp_path / "runs", "r", [])
    res = client.post("/api/runs/r/export", json={"to": "bnb-8bit"})
    assert res.status_code == 400 and "--to bnb-8bit cannot run on this machine" in res.json()["error"]


@pytest.mark.parametrize("name, body, status, message", [
    ("nope", {"to": "safetensors"}, 404, "no run named 'nope'"),
    ("r", {"to": "onnx"}, 400,
     "unknown export format 'onnx'; known: awq, bnb-4bit, bnb-8bit, gguf, gptq, int8, safetensors"),
    ("r", {}, 400, 'say which format: {"to": "safetensors"'),
    ("r", {"to": "safetensors", "quant": "q4_k_m"}, 400, "takes --quant bf16 | f16 | f32, not 'q4_k_m'"),
    ("r", {"to": "safetensors"}, 400, "run 'r' has no adapter/ or model/ yet"),
])
def test_export_refuses_bad_requests_with_the_reason(client, tmp_path, name, body, status, message):
    fake_run(tmp_path / "runs", "r", [])
    res = client.post(f"/api/runs/{name}/export", json=body)
    assert res.status_code == status and message in res.json()["error"], res.json()
    assert client.get("/api/jobs").json() == []  # nothing queued


def test_export_runs_as_a_job_and_its_table_is_listed(client, tmp_path, tiny_model_dir):
    from ftatlas.pipeline import train
    from ftatlas.recipe import build_recipe
    from tests.conftest import tiny_recipe

    train(build_recipe(tiny_recipe(tiny_model_dir, tmp_path / "runs")), progress=False)
    res = client.post("/api/runs/tiny/export", json={"to": "safetensors", "quant": "f32"})
    assert res.status_code == 200, res.text
    job = res.json()
    assert job["args"][0] == "export" and job["args"][2:] == ["--to", "safetensors", "--quant", "f32"]
    again = client.post("/api/runs/tiny/export", json={"to": "safetensors", "quant": "f32"})
    assert again.status_code == 400 and "already queued or running" in again.json()["error"]
    assert _wait_job(client, job["id"])["state"] == "done"
    exports = client.get("/api/runs/tiny").json()["exports"]
    assert [x["name"] for x in exports] == ["safetensors-f32"]
    x = exports[0]
    assert x["ok"] and x["drops"] == {} and "argmax agrees at 100.0%" in x["logits"]
    run_row, export_row = x["rows"]
    assert export_row["artifact"] == "safetensors f32" and export_row["consumer"] == "transformers"
    assert x["metrics"] and all(export_row[m] == run_row[m] for m in x["metrics"])  # f32: the run's own answers
    assert export_row["size"].endswith("MiB") or export_row["size"].endswith("KiB")


def test_a_malformed_export_json_is_a_problem_not_a_crash(client, tmp_path):
    run = fake_run(tmp_path / "runs", "r", [])
    (run / "exports" / "gguf-q8_0").mkdir(parents=True)
    (run / "exports" / "gguf-q8_0" / "export.json").write_text('{"format": "gguf"}')
    (run / "exports" / "bad").mkdir()
    (run / "exports" / "bad" / "export.json").write_text("{half")
    detail = client.get("/api/runs/r").json()
    assert detail["exports"] == []
    assert any("gguf-q8_0/export.json: not an export.json" in p for p in detail["problems"])
    assert any("bad/export.json" in p for p in detail["problems"])


def test_arena_files_are_listed_checked_and_queued(client, tmp_path):
    root = tmp_path / "arena"
    root.mkdir()
    spec = {"name": "mini", "model": {"name": "m"}, "data": {"builtin": "contacts"}, "output": {"dir": str(root)},
            "cells": [{"name": "base", "method": "none"}]}
    (root / "mini.yaml").write_text(yaml.safe_dump(spec))
    (root / "elsewhere.yaml").write_text(yaml.safe_dump({**spec, "output": {"dir": str(tmp_path / "other")}}))
    (root / "broken.yaml").write_text("name: x\ncells: []\n")
    files = {f["file"]: f for f in client.get("/api/arena-files").json()}
    assert files["mini.yaml"] == {"file": "mini.yaml", "name": "mini", "cells": 1, "error": None}
    assert "invalid arena" in files["broken.yaml"]["error"] and "cells" in files["broken.yaml"]["error"]
    res = client.post("/api/arena-files/elsewhere.yaml/run")
    assert res.status_code == 400 and "set output.dir to it" in res.json()["error"]
    assert client.post("/api/arena-files/nope.yaml/run").status_code == 404
    assert client.post("/api/arena-files/..%2Fx.yaml/run").status_code == 404
    res = client.post("/api/arena-files/broken.yaml/run")
    assert res.status_code == 400 and "invalid arena" in res.json()["error"]
    job = client.post("/api/arena-files/mini.yaml/run").json()
    assert job["name"] == "arena:mini" and job["args"] == ["arena", str((root / "mini.yaml").resolve())]
    client.post(f"/api/jobs/{job['id']}/stop")

"""ftatlas data synth: planning, de-duplication against seeds, filters, provenance; an HTTP teacher served
offline by the tiny model; bad inputs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.data.filters import FilterSpec
from ftatlas.data.synth import clean_instruction, synthesize
from ftatlas.data.teachers import EndpointTeacher, LocalTeacher, TeacherError
from ftatlas.recipe import DecodeSpec
from tests.conftest import write_jsonl

runner = CliRunner()
SEEDS = ["Give three tips for staying healthy.", "Explain why the sky is blue.", "Name two prime numbers."]


class Scripted:
    """A teacher that answers from a script, so the pipeline around it can be checked exactly."""

    name = "scripted"

    def __init__(self, instructions: list[str], answers: dict[str, str]) -> None:
        self.instructions, self.answers, self.seen = list(instructions), answers, []

    def complete(self, chats, decode):
        self.seen.append(chats)
        if "Reply with the" in chats[0][-1]["content"]:
            return [self.instructions.pop(0) for _ in chats]
        return [self.answers.get(c[-1]["content"], "") for c in chats]


@pytest.fixture
def seeds(tmp_path):
    return write_jsonl(tmp_path / "seeds.jsonl", [{"instruction": s, "output": "ok"} for s in SEEDS])


def test_self_instruct_dedups_against_seeds_filters_and_keeps_provenance(seeds, tmp_path):
    teacher = Scripted(
        ["Task: Describe how rainbows form.",          # kept
         "1. Explain why the sky is blue.",            # a seed again -> duplicate
         "Describe how rainbows form.",                # same as row 0 -> duplicate
         "",                                           # empty instruction
         "Write a poem about a cat.",                  # refused -> filtered
         "List the planets of the solar system."],     # empty answer
        {"Describe how rainbows form.": "Sunlight refracts in raindrops and splits into colours.",
         "Explain why the sky is blue.": "Rayleigh scattering.",
         "Write a poem about a cat.": "I'm sorry, but I can't help with that."})
    rep = synthesize(seeds, teacher, tmp_path / "out.jsonl", n=6, k=2, mode="self-instruct",
                     filters=FilterSpec({"refusal": (None, 0.0)}))
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in rows] == ["Describe how rainbows form."]
    prov = rows[0]["provenance"]
    assert prov["teacher"] == "scripted" and prov["mode"] == "self-instruct" and len(prov["seeds"]) == 2
    assert all(s.startswith(str(seeds)) for s in prov["seeds"])
    reasons = {d["index"]: d["reason"] for d in rep["dropped"]}
    assert reasons == {1: "duplicate of seed 2", 2: "duplicate of generated 0", 3: "empty instruction",
                       4: "refusal 1 > 0", 5: "empty answer"}
    assert (rep["requested"], rep["kept"], rep["removed"]) == (6, 1, 5)
    shown = teacher.seen[0][0][0]["content"]  # the self-instruct prompt shows k=2 seed instructions
    assert sum(s in shown for s in SEEDS) == 2


def test_evol_instruct_and_documents_prompts(seeds, tmp_path):
    teacher = Scripted(["Give five tips for staying healthy in winter."] * 4,
                       {"Give five tips for staying healthy in winter.": "Sleep, eat well, move, wash, rest."})
    rep = synthesize(seeds, teacher, tmp_path / "e.jsonl", n=4, mode="evol-instruct", dedup_threshold=1.0)
    asked = [c[0]["content"] for c in teacher.seen[0]]
    assert all("Rewrite the following task" in a for a in asked)
    assert rep["kept"] == 1 and sum(d["reason"].startswith("duplicate of generated") for d in rep["dropped"]) == 3
    docs = tmp_path / "docs.txt"
    docs.write_text("The Tresel T-56 is assembled in Quillan by a team of forty.\n\nA second passage here.\n")
    teacher = Scripted(["Where is the Tresel T-56 assembled?", "What is the second passage?"],
                       {"Where is the Tresel T-56 assembled?": "In Quillan.", "What is the second passage?": "A."})
    rep = synthesize(docs, teacher, tmp_path / "d.jsonl", n=2)
    assert rep["mode"] == "documents" and rep["kept"] == 2
    row = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert row["messages"][0]["role"] == "system" and "Quillan" in row["messages"][0]["content"]


def test_clean_instruction():
    assert clean_instruction('New task: "Say hi."\n\nExtra chatter') == "Say hi."
    assert clean_instruction("2) Count to three.") == "Count to three."


@pytest.fixture
def served_tiny(tiny_model_dir):
    """An OpenAI-compatible /v1/chat/completions served offline by the tiny model (as `ftatlas serve` would)."""
    local = LocalTeacher(str(tiny_model_dir), progress=False)
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            if self.path != "/v1/chat/completions":
                self.send_response(404)
                self.end_headers()
                return
            spec = DecodeSpec(max_new_tokens=body["max_tokens"], seed=body.get("seed", 0))
            [text] = local.complete([body["messages"]], spec)
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()


def test_synth_cli_against_a_local_endpoint(seeds, tmp_path, served_tiny):
    url, calls = served_tiny
    res = runner.invoke(app, ["data", "synth", str(seeds), "--teacher", url, "--n", "3", "--max-new-tokens", "8",
                              "--out", str(tmp_path / "s.jsonl")])
    assert res.exit_code == 0, res.output
    assert "self-instruct with default@" in res.output and "3 generated" in res.output
    assert len(calls) >= 3 and calls[0]["model"] == "default" and calls[0]["temperature"] == 0.8
    rep = json.loads((tmp_path / "s.report.json").read_text())
    assert rep["kept"] + len(rep["dropped"]) == 3  # every generated row is either kept or named with a reason
    for line in (tmp_path / "s.jsonl").read_text().splitlines():
        assert json.loads(line)["provenance"]["teacher"].endswith(url)


def test_synth_bad_inputs(seeds, tmp_path):
    with pytest.raises(TeacherError, match="unreachable"):
        EndpointTeacher("http://127.0.0.1:9").complete([[{"role": "user", "content": "hi"}]], DecodeSpec())
    res = runner.invoke(app, ["data", "synth", str(seeds), "--teacher", "http://127.0.0.1:9", "--n", "1",
                              "--out", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "unreachable" in res.output
    res = runner.invoke(app, ["data", "synth", str(tmp_path / "none.jsonl"), "--teacher", "http://127.0.0.1:9"])
    assert res.exit_code == 2 and "does not exist" in res.output
    with pytest.raises(ValueError, match="unknown synth mode"):
        synthesize(seeds, Scripted([], {}), tmp_path / "o.jsonl", mode="telepathy")  # type: ignore[arg-type]


def test_judge_filter_scores_answers_and_fails_unreadable_replies(tmp_path):
    from ftatlas.data.filters import filter_rows
    from ftatlas.data.table import load_table

    class Judge:
        name = "judge"

        def complete(self, chats, decode):
            self.chats = chats
            return ["Score: 8", "I think 3/10. Score: 3", "no idea"]

    f = write_jsonl(tmp_path / "f.jsonl", [{"instruction": f"q{i}", "output": f"answer {i}"} for i in range(3)])
    judge = Judge()
    res = filter_rows(load_table(f), FilterSpec({"judge": (6, None)}, judge_teacher=judge))
    assert res.kept == [0] and [r["index"] for r in res.removed] == [1, 2]
    assert res.removed[1]["reasons"] == ["judge nan < 6"]
    assert "[Answer to rate]\nanswer 1" in judge.chats[1][-1]["content"]

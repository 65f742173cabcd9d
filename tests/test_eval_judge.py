"""LLM-as-judge: reply parsing, the position-swap rule, an OpenAI-compatible endpoint (a real HTTP server started
here, answering from a script) and a local judge model (the tiny random Llama)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ftatlas.data.records import Message
from ftatlas.evaluate.judge import JudgeError, combine, judge_pairwise, judge_score, parse_score, parse_verdict
from ftatlas.evaluate.model_metrics import EvalBatch, check_metrics
from ftatlas.recipe import EvalSpec, JudgeSpec


@pytest.mark.parametrize(("reply", "want"), [
    ("Score: 7", 7.0), ("score = 9/10", 9.0), ("**Rating:** 3", 3.0), ("The score is 10.", 10.0),
    ("I would give it 8 out of 10.", 8.0), ("6/10", 6.0), ("  5  ", 5.0), ("Score: 7.5", 7.5),
    ("Score: 0", None), ("Score: 11", None), ("It is quite good.", None), ("", None),
    ("There are 3 errors in 2 lines", None),
])
def test_parse_score(reply, want):
    assert parse_score(reply) == want


@pytest.mark.parametrize(("reply", "want"), [
    ("Verdict: A", "A"), ("verdict: b", "B"), ("Verdict: tie", "tie"), ("**Verdict:** [B]", "B"),
    ("[[A]]", "A"), ("My final answer: [[C]]", "tie"), ("B", "B"), ("Both are fine.", None), ("", None),
])
def test_parse_verdict(reply, want):
    assert parse_verdict(reply) == want


@pytest.mark.parametrize(("first", "swapped", "want"), [
    ("A", "B", "win"), ("B", "A", "loss"), ("tie", "tie", "tie"),
    ("A", "A", "inconsistent"), ("B", "B", "inconsistent"), ("A", "tie", "inconsistent"),
    (None, "B", "unparsed"), ("A", None, "unparsed"),
])
def test_position_swap_rule(first, swapped, want):
    assert combine(first, swapped) == want


# --- a scripted OpenAI-compatible server --------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"no such route")
            return
        reply = self.server.script(body["messages"][-1]["content"])
        data = json.dumps({"object": "chat.completion", "model": body["model"],
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                        "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.seen, srv.script = [], lambda text: "Score: 5"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _judge_batch(srv, predictions: list[str], references: list[str], **judge) -> EvalBatch:
    spec = EvalSpec(judge=JudgeSpec(model="judge-1", base_url=f"http://127.0.0.1:{srv.server_port}/v1", **judge))
    n = len(predictions)
    msgs = [[Message("user", f"question {i}")] for i in range(n)]
    return EvalBatch(None, None, [], msgs, msgs, [""] * n, references, predictions, spec, progress=False)


def _answer(text: str, label: str) -> str:
    return re.search(rf"\[{label}\]\n(.*?)(?:\n\n|$)", text, re.S).group(1)


def test_endpoint_pointwise_parses_and_counts_unparsed(server, monkeypatch):
    replies = {"good": "Score: 9", "meh": "I'd give it 4 out of 10.", "???": "I cannot rate this."}
    server.script = lambda text: replies[_answer(text, "Answer to rate")]
    monkeypatch.setenv("JUDGE_KEY", "s3cret")
    res = judge_score(_judge_batch(server, ["good", "meh", "???"], ["ref0", "ref1", "ref2"], api_key_env="JUDGE_KEY"))
    assert res.per == [9.0, 4.0, None]
    assert res.value() == pytest.approx(6.5)  # mean of the scored replies
    assert res.unscored == 1 and res.info["unparsed"] == 1
    assert [n["judge_reply"] for n in res.notes] == ["Score: 9", "I'd give it 4 out of 10.", "I cannot rate this."]
    first = server.seen[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer s3cret"
    assert first["body"]["model"] == "judge-1" and first["body"]["temperature"] == 0
    prompts = sorted(s["body"]["messages"][-1]["content"] for s in server.seen)
    assert "[Reference answer]\nref0" in prompts[0] and "Score: N" in prompts[0]


def test_endpoint_pointwise_custom_rubric_without_reference(server):
    judge_score(_judge_batch(server, ["x"], ["secret ref"], rubric="Only brevity matters.", show_reference=False))
    text = server.seen[0]["body"]["messages"][-1]["content"]
    assert text.startswith("Only brevity matters.") and "secret ref" not in text


def test_pairwise_position_biased_judge_is_inconsistent_not_a_win(server):
    server.script = lambda text: "Verdict: A"  # always prefers whatever is shown first
    res = judge_pairwise(_judge_batch(server, ["p0", "p1", "p2"], ["r0", "r1", "r2"]))
    assert res.info["win"] == 0 and res.info["inconsistent"] == 3
    assert res.per == [0.5, 0.5, 0.5]
    assert len(server.seen) == 6  # every example judged in both orders


def test_pairwise_consistent_judge_wins_losses_ties_unparsed(server):
    def prefer_good(text: str) -> str:
        a, b = _answer(text, "Answer A"), _answer(text, "Answer B")
        if "hmm" in (a, b):
            return "Hmm, hard to say."
        return "Verdict: A" if a == "good" else "Verdict: B" if b == "good" else "Verdict: tie"

    server.script = prefer_good
    res = judge_pairwise(_judge_batch(server, ["good", "bad", "meh", "hmm"], ["bad", "good", "meh2", "x"]))
    assert [n["judge_outcome"] for n in res.notes] == ["win", "loss", "tie", "unparsed"]
    assert res.per == [1.0, 0.0, 0.5, None]
    assert {k: res.info[k] for k in ("win", "loss", "tie", "inconsistent", "unparsed")} == \
        {"win": 1, "loss": 1, "tie": 1, "inconsistent": 0, "unparsed": 1}
    assert res.value() == pytest.approx(0.5)


def test_endpoint_errors_are_clear(server, monkeypatch):
    batch = _judge_batch(server, ["x"], ["y"])
    batch.spec.judge.base_url = f"http://127.0.0.1:{server.server_port}/wrong"
    with pytest.raises(JudgeError, match=r"/wrong/chat/completions failed: HTTP 404: no such route"):
        judge_score(batch)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    spec = EvalSpec(judge=JudgeSpec(model="m", base_url="http://h/v1", api_key_env="NO_SUCH_KEY_VAR"))
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR is not set"):
        check_metrics(["judge_score"], spec)
    with pytest.raises(ValueError, match="metric 'judge_pairwise' needs eval.judge"):
        EvalSpec(metrics=["judge_pairwise"])


def test_endpoint_judge_in_evaluate_rows_fills_eval_json_fields(server, tiny_model, tokenizer, chat_file):
    from ftatlas.data.readers import read_file
    from ftatlas.evaluate.runner import evaluate_rows

    script: Callable[[str], str] = lambda text: "Verdict: tie" if "[Answer A]" in text else "Score: 3"  # noqa: E731
    server.script = script
    judge = JudgeSpec(model="judge-1", base_url=f"http://127.0.0.1:{server.server_port}/v1")
    spec = EvalSpec(metrics=["exact_match", "judge_score", "judge_pairwise"], batch_size=4, judge=judge,
                    decode={"max_new_tokens": 4})
    res = evaluate_rows(tiny_model.eval(), tokenizer, read_file(chat_file)[:4], spec, spec.metrics, progress=False)
    assert res["metrics"]["judge_score"] == 3.0 and res["ci95"]["judge_score"] == [3.0, 3.0]
    assert res["metrics"]["judge_pairwise"] == 0.5 and res["details"]["judge_pairwise"]["tie"] == 4
    assert res["scales"] == {"judge_score": "1-10"}
    assert res["examples"][0]["judge_reply"] == "Score: 3"
    assert [p["source"] for p in res["predictions"]] == [f"{chat_file}:{i}" for i in range(1, 5)]
    assert json.loads(json.dumps(res)) == res  # eval.json stays plain JSON


def test_local_judge_plumbing_with_the_tiny_model(tiny_model_dir, tokenizer):
    spec = EvalSpec(judge=JudgeSpec(model=str(tiny_model_dir), max_new_tokens=6), batch_size=2)
    msgs = [[Message("user", "Shout: apple")], [Message("user", "Shout: river")], [Message("user", "Hi")]]
    import torch

    batch = EvalBatch(torch.nn.Linear(1, 1), tokenizer, [], msgs, msgs, [""] * 3, ["APPLE", "RIVER", "Hello"],
                      ["APPLE", "river", ""], spec, progress=False)
    res = judge_score(batch)
    replies = [n["judge_reply"] for n in res.notes]
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    assert res.per == [parse_score(r) for r in replies]  # whatever a random model says, parsed the same way
    assert res.info["unparsed"] == sum(p is None for p in res.per) == res.unscored
    assert res.info["judge"] == f"local {tiny_model_dir}"


def test_pairwise_against_another_runs_eval_json(server, tmp_path):
    from ftatlas.data.errors import DataError
    from ftatlas.data.records import Conversation

    server.script = lambda text: ("Verdict: A" if _answer(text, "Answer A") == "good" else
                                  "Verdict: B" if _answer(text, "Answer B") == "good" else "Verdict: tie")
    other = tmp_path / "other-eval.json"
    other.write_text(json.dumps({"metrics": {}, "predictions": [
        {"source": "held.jsonl:2", "prediction": "good"}, {"source": "held.jsonl:1", "prediction": "bad"}]}))
    batch = _judge_batch(server, ["good", "meh"], ["ref", "ref"], opponent=str(other))
    batch.rows = [Conversation([], source="held.jsonl", line=1), Conversation([], source="held.jsonl", line=2)]
    res = judge_pairwise(batch)
    assert [n["judge_outcome"] for n in res.notes] == ["win", "loss"]  # vs "bad" (line 1), vs "good" (line 2)
    assert res.info["opponent"] == str(other)
    batch.cache.clear()
    batch.rows[1] = Conversation([], source="held.jsonl", line=7)
    with pytest.raises(DataError, match=r"other-eval\.json: field 'predictions': no prediction for held\.jsonl:7"):
        judge_pairwise(batch)
    other.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(DataError, match="field 'predictions': missing"):
        check_metrics(["judge_pairwise"], batch.spec)

"""`ftatlas serve` on the tiny model, driven by the official `openai` client against a live uvicorn server."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import torch
from conftest import tiny_recipe

from ftatlas.data.records import Conversation, Message
from ftatlas.data.templating import loss_spans
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
from ftatlas.serve import Limits, create_app, load_pool

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

FAST = {"eval": {"max_examples": 2, "batch_size": 2, "decode": {"max_new_tokens": 4}}}


class Live:
    """A uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app, host: str = "127.0.0.1") -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}"

    def client(self, key: str = "none", **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _train(model_dir, parent, name, **over):
    over = {**FAST, **over}
    over.setdefault("train", {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "log_every": 1, "precision": "fp32"})
    over.setdefault("data", {"builtin": "contacts", "max_length": 128, "max_train": 8})
    return train(build_recipe(tiny_recipe(model_dir, parent, output={"name": name}, **over)), progress=False)


def _scramble(weights) -> None:
    """A few training steps barely move a random tiny model's greedy answers; large random LoRA B matrices
    make this adapter's answers surely differ from the base's and the other adapter's."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(1)
    tensors = load_file(weights)
    save_file({k: torch.randn_like(v) if "lora_B" in k else v for k, v in tensors.items()}, weights)


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    from ftatlas.context.retrieval.ingest import ingest

    parent = tmp_path_factory.mktemp("runs")
    docs = parent / "docs"
    docs.mkdir()
    (docs / "people.md").write_text("Ana Silva is 34 and lives in Lisbon.\n\nBruno Okafor is 51 and lives in Oslo.")
    ingest([str(docs)], parent / "idx", progress=False)
    lora_b = _train(tiny_model_dir, parent, "lora-b").run.path
    _scramble(lora_b / "adapter" / "adapter_model.safetensors")
    return {
        "lora-a": _train(tiny_model_dir, parent, "lora-a").run.path,
        "lora-b": lora_b,
        "rag": _train(tiny_model_dir, parent, "rag", method="none",
                      context={"mode": "rag", "index": str(parent / "idx"), "k": 1}).run.path,
        "rm": _train(tiny_model_dir, parent, "rm", objective={"name": "reward"}).run.path,
    }


@pytest.fixture(scope="module")
def pool(runs):
    return load_pool([str(p) for p in runs.values()], device="cpu")


@pytest.fixture(scope="module")
def live(pool):
    server = Live(create_app(pool, Limits(max_tokens=64, max_body_bytes=20_000)))
    yield server
    server.stop()


def test_models_lists_runs_and_the_shared_base(live, pool, tiny_model_dir):
    ids = [m.id for m in live.client().models.list().data]
    assert ids == [str(tiny_model_dir), "lora-a", "lora-b", "rag", "rm"]
    # both adapters and the rag run sit on one base in memory
    assert pool.models["lora-a"].model is pool.models["lora-b"].model is pool.models[str(tiny_model_dir)].model
    assert pool.models["rag"].model is pool.models["lora-a"].model
    assert pool.models["lora-a"].tokenizer is not pool.models["lora-b"].tokenizer  # each run's own template


def test_chat_completion_stream_and_completions(live):
    c = live.client()
    msgs = [{"role": "user", "content": "Shout: apple"}]
    r = c.chat.completions.create(model="lora-a", messages=msgs, max_tokens=6)
    text = r.choices[0].message.content
    assert r.object == "chat.completion" and r.model == "lora-a" and isinstance(text, str)
    assert r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.choices[0].finish_reason in ("stop", "length")
    chunks = list(c.chat.completions.create(model="lora-a", messages=msgs, max_tokens=6, stream=True,
                                            stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert streamed == text  # greedy: the stream spells the same answer
    assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens
    comp = c.completions.create(model="lora-a", prompt=["Hello", "The sky is"], max_tokens=5, n=2)
    assert len(comp.choices) == 4 and comp.object == "text_completion" and comp.usage.completion_tokens <= 20
    assert comp.choices[0].text == comp.choices[1].text  # greedy by default (the run's eval decoding)
    sampled = c.chat.completions.create(model="lora-a", messages=msgs, max_tokens=8, temperature=1.5, seed=1, n=3)
    unasked = c.chat.completions.create(model="lora-a", messages=msgs, temperature=1.5, seed=1)
    assert unasked.usage.completion_tokens <= 4  # no max_tokens: the run's eval.decode.max_new_tokens
    assert len({ch.message.content for ch in sampled.choices}) > 1


def test_two_adapters_on_one_base_answer_differently(live, tiny_model_dir):
    c = live.client()
    msgs = [{"role": "user", "content": "Shout: river"}]
    answers = {m: c.chat.completions.create(model=m, messages=msgs, max_tokens=12).choices[0].message.content
               for m in ("lora-a", "lora-b", str(tiny_model_dir))}
    assert answers["lora-b"] != answers["lora-a"] and answers["lora-b"] != answers[str(tiny_model_dir)]


def test_served_prompt_is_the_training_render(pool):
    served = pool.models["lora-a"]
    conv = Conversation([Message("user", "Shout: apple"), Message("assistant", "APPLE")])
    text, spans = loss_spans(served.tokenizer, conv, "assistant")
    prompt, _ = served.render(conv.messages[:1])
    assert text[: spans[0][0]] == prompt  # byte-identical to what training put before the answer


def test_rag_run_returns_sources_and_reward_run_scores(live):
    r = live.client().chat.completions.create(model="rag", messages=[{"role": "user", "content": "Where does Bruno "
                                                                                                  "live?"}],
                                              max_tokens=4)
    assert r.model_extra["sources"]["passages"] == ["people.md#0"]
    res = httpx.post(f"{live.url}/v1/score", json={"model": "rm", "pairs": [
        {"prompt": "Who lives in Oslo?", "response": "Bruno"}, {"prompt": "Who lives in Oslo?", "response": "Ana"}]})
    assert res.status_code == 200
    scores = [d["score"] for d in res.json()["data"]]
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores) and scores[0] != scores[1]
    bad = httpx.post(f"{live.url}/v1/score", json={"model": "lora-a", "pairs": [{"prompt": "q", "response": "a"}]})
    assert bad.status_code == 400 and "not a reward model" in bad.json()["error"]["message"]


def test_errors_are_openai_shaped(live):
    c = live.client()
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="lora-a", messages=[{"role": "user", "content": "hi"}], max_tokens=65)
    assert e.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="lora-a", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.APIStatusError) as e:  # body over max_body_bytes
        c.chat.completions.create(model="lora-a", messages=[{"role": "user", "content": "x" * 30_000}])
    assert e.value.status_code == 413 and e.value.body["code"] == "request_too_large"
    res = httpx.post(f"{live.url}/v1/chat/completions", content=b"{not json", headers={"content-type":
                                                                                        "application/json"})
    assert res.status_code == 400 and "Traceback" not in res.text and "error" in res.json()


@pytest.fixture
def narrow(pool):
    """A server that admits one request at a time."""
    server = Live(create_app(pool, Limits(max_queue=1, max_tokens=400)))
    yield server
    server.stop()


def test_429_when_full_and_a_client_disconnect_frees_the_slot(narrow):
    c = narrow.client()
    msgs = [{"role": "user", "content": "Tell a long story"}]
    stream = c.chat.completions.create(model="lora-a", messages=msgs, max_tokens=400, stream=True)
    next(iter(stream))  # the request is inside
    with pytest.raises(openai.RateLimitError) as e:
        c.chat.completions.create(model="lora-a", messages=msgs, max_tokens=2)
    assert e.value.response.headers["retry-after"] == "1"
    stream.close()  # client goes away mid-stream
    deadline = time.monotonic() + 10
    while httpx.get(f"{narrow.url}/health").json()["inside"] and time.monotonic() < deadline:
        time.sleep(0.05)
    r = c.chat.completions.create(model="lora-a", messages=msgs, max_tokens=2)
    assert r.usage.completion_tokens <= 2


def test_api_key_required_and_checked(pool):
    server = Live(create_app(pool, Limits(api_key="s3cret-key-0123456789")))
    try:
        with pytest.raises(openai.AuthenticationError):
            server.client("wrong").models.list()
        assert [m.id for m in server.client("s3cret-key-0123456789").models.list().data][1] == "lora-a"
    finally:
        server.stop()


def test_concurrent_requests_share_a_batch(live):
    from concurrent.futures import ThreadPoolExecutor

    c = live.client()
    engine = live.server.config.app.state.engine
    engine.batches.clear()
    with ThreadPoolExecutor(8) as ex:
        outs = list(ex.map(lambda i: c.completions.create(model="lora-a", prompt=f"Count {i}", max_tokens=16),
                           range(8)))
    assert len(outs) == 8 and max(engine.batches) > 1


def test_a_run_that_appears_after_start_up_is_served_from_runs_root(runs, tmp_path, tiny_model_dir):
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "runs"
    shutil.copytree(runs["rag"], root / "rag")  # there at start-up, loaded on first request
    app = create_app(None, Limits(max_tokens=16), runs_root=root, device="cpu")
    server = Live(app)
    try:
        c = server.client()
        assert [(m.id, m.model_extra["ftatlas"]["loaded"]) for m in c.models.list().data] == [("rag", False)]
        msgs = [{"role": "user", "content": "Where does Bruno live?"}]
        r = c.chat.completions.create(model="rag", messages=msgs, max_tokens=8)
        rag_answer = r.choices[0].message.content
        assert r.model_extra["sources"]["passages"] == ["people.md#0"]
        shutil.copytree(runs["lora-b"], root / "late")  # a run finishing while the server runs
        (root / "unfinished").mkdir()
        (root / "unfinished" / "recipe.yaml").write_text((runs["lora-b"] / "recipe.yaml").read_text())
        cards = {m.id: m.model_extra["ftatlas"] for m in c.models.list().data}
        assert cards["late"]["loaded"] is False and "unfinished" not in cards
        start = threading.Barrier(2)

        def ask(_: int) -> str:
            start.wait()  # both are first requests for a run not loaded yet
            return c.chat.completions.create(model="late", messages=msgs, max_tokens=8).choices[0].message.content

        with ThreadPoolExecutor(2) as ex:
            first, second = ex.map(ask, range(2))
        assert first == second and app.state.runs.loaded == ["rag", "late"]  # each loaded once
        pool = app.state.pool
        assert pool.models["late"].model is pool.models["rag"].model  # the adapter joined the loaded base
        assert pool.models["late"].adapter == "late"
        plain = c.chat.completions.create(model=str(tiny_model_dir), messages=msgs, max_tokens=8)
        assert first != plain.choices[0].message.content  # lora-b's scrambled adapter answers...
        again = c.chat.completions.create(model="rag", messages=msgs, max_tokens=8).choices[0].message.content
        assert again == rag_answer  # ...and the context-only run on the same base still runs without it
        cards = {m.id: m.model_extra["ftatlas"] for m in c.models.list().data}
        assert cards["late"]["loaded"] is True and cards["late"]["adapter"] == "late"
        assert str(tiny_model_dir) in cards  # the base's own id
        for unknown in ("nope", "unfinished", "../late", ".hidden"):
            with pytest.raises(openai.NotFoundError) as e:
                c.chat.completions.create(model=unknown, messages=msgs, max_tokens=2)
            assert e.value.body["code"] == "model_not_found"
        shutil.copytree(runs["rm"], root / "late-rm")  # a reward run found later scores over HTTP
        res = httpx.post(f"{server.url}/v1/score", json={"model": "late-rm", "pairs": [{"prompt": "q",
                                                                                         "response": "a"}]})
        assert res.status_code == 200 and isinstance(res.json()["data"][0]["score"], float)
    finally:
        server.stop()
        app.state.engine.close()


def test_a_broken_run_under_runs_root_answers_a_clear_error(runs, tmp_path):
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(runs["lora-a"], root / "broken")
    (root / "broken" / "adapter" / "adapter_config.json").write_text("{not json")
    app = create_app(None, runs_root=root, device="cpu")
    server = Live(app)
    try:
        with pytest.raises(openai.BadRequestError) as e:
            server.client().chat.completions.create(model="broken", messages=[{"role": "user", "content": "hi"}])
        assert e.value.body["param"] == "model" and "loading run 'broken' failed" in e.value.body["message"]
        assert "Traceback" not in e.value.body["message"]
    finally:
        server.stop()
        app.state.engine.close()


def test_non_loopback_bind_requires_a_key(monkeypatch):
    from ftatlas.serve.server import api_key_from_env

    with pytest.raises(ValueError, match="--api-key-env"):
        api_key_from_env(None, "0.0.0.0")
    assert api_key_from_env(None, "127.0.0.1") is None and api_key_from_env(None, "::1") is None
    monkeypatch.setenv("FTA_KEY", "short")
    with pytest.raises(ValueError, match="at least 16"):
        api_key_from_env("FTA_KEY", "0.0.0.0")
    monkeypatch.setenv("FTA_KEY", "k" * 20)
    assert api_key_from_env("FTA_KEY", "0.0.0.0") == "k" * 20


def test_cli_refuses_open_binds_without_key_and_vllm_without_cuda(runs):
    from typer.testing import CliRunner

    from ftatlas.cli import app

    res = CliRunner().invoke(app, ["serve", str(runs["lora-a"]), "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "--api-key-env" in res.output
    res = CliRunner().invoke(app, ["serve", str(runs["lora-a"]), "--backend", "vllm"])
    if not torch.cuda.is_available():
        assert res.exit_code == 2 and "needs a CUDA GPU" in res.output
    res = CliRunner().invoke(app, ["serve"])
    assert res.exit_code == 2 and "nothing to serve" in res.output
    res = CliRunner().invoke(app, ["serve", "--runs", str(runs["lora-a"] / "no-such-folder")])
    assert res.exit_code == 2 and "no-such-folder" in res.output and "no such folder" in res.output


def test_vllm_command_puts_adapter_runs_on_one_base(runs, tiny_model_dir):
    from ftatlas.serve.vllm import vllm_command

    cmd = vllm_command([str(runs["lora-a"]), str(runs["lora-b"])], "127.0.0.1", 8001, 256)
    assert cmd[:3] == ["vllm", "serve", str(tiny_model_dir)] and "--enable-lora" in cmd
    assert cmd[cmd.index("--lora-modules") + 1:] == [f"lora-a={runs['lora-a'] / 'adapter'}",
                                                     f"lora-b={runs['lora-b'] / 'adapter'}"]
    with pytest.raises(ValueError, match="rag context is not applied by vLLM"):
        vllm_command([str(runs["rag"])], "127.0.0.1", 8001, 256)
    with pytest.raises(ValueError, match="cannot be served by vLLM"):
        vllm_command([str(runs["rm"])], "127.0.0.1", 8001, 256)


def test_gguf_through_llama_cpp():
    pytest.importorskip("llama_cpp")
    from ftatlas.models.loading import ALIASES

    gguf = str(ALIASES["smollm2-135m"]())
    server = Live(create_app([gguf], backend="llama.cpp"))
    try:
        c = server.client()
        assert c.models.list().data[0].model_extra["ftatlas"]["backend"] == "llama.cpp"
        msgs = [{"role": "user", "content": "What is the capital of France?"}]
        r = c.chat.completions.create(model=gguf, messages=msgs, max_tokens=12, temperature=0)
        assert r.choices[0].message.content.strip() and 0 < r.usage.completion_tokens <= 12
        served = server.server.config.app.state.pool.models[gguf]
        prompt, _ = served.render([Message("user", msgs[0]["content"])])
        assert prompt.startswith("<|im_start|>")  # rendered by ftatlas with the template the GGUF carries
        assert r.usage.prompt_tokens == len(served.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        streamed = "".join(ch.choices[0].delta.content or "" for ch in
                           c.chat.completions.create(model=gguf, messages=msgs, max_tokens=12, temperature=0,
                                                     stream=True))
        assert streamed == r.choices[0].message.content
    finally:
        server.stop()

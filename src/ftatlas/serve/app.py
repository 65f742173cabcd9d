"""The OpenAI-compatible HTTP API over a pool of served runs: ``create_app(...) -> FastAPI``.

Routes: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` as server-sent events ending with
``data: [DONE]``), ``POST /v1/completions`` (raw text, no template or context), ``POST /v1/score`` (reward runs,
an ftatlas extension) and ``GET /health``. A chat answer whose run adds context (RAG passages, few-shot
examples) carries what was added in the extension field ``sources``; the official clients ignore it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ftatlas.data.records import Message
from ftatlas.serve.engine import Engine, Job
from ftatlas.serve.guards import Gate, GuardMiddleware, Limits, install_error_handlers
from ftatlas.serve.pool import Pool, Served, load_pool
from ftatlas.serve.runs_root import RunsRoot
from ftatlas.serve.schemas import ApiError, ChatRequest, CompletionRequest, Sampling, ScoreRequest

log = logging.getLogger("ftatlas.serve")


def create_app(pool: Pool | list[str] | None = None, limits: Limits | None = None, *, max_batch: int = 16,
               device: str = "auto", backend: str = "auto", runs_root: str | Path | None = None) -> FastAPI:
    """An app serving ``pool`` (or the run dirs / models it names, loaded here) and, with ``runs_root``, every
    finished run under that folder, loaded on its first request (runs that appear later included). The batching
    worker starts now, so the app also works mounted inside another one; ``app.state.engine.close()`` stops it
    (the app's own lifespan does that at shutdown, after uvicorn has let in-flight requests finish)."""
    pool = pool if isinstance(pool, Pool) else load_pool(pool or [], device, backend)
    limits = limits or Limits()
    engine = Engine(pool, max_batch=max_batch)
    runs = RunsRoot(runs_root, pool) if runs_root is not None else None
    served_for = _Models(pool, engine, runs)
    # Contexts (a RAG index's SQLite store, its embedder) are used from one thread, one request at a time.
    context_thread = ThreadPoolExecutor(1, thread_name_prefix="ftatlas-serve-context")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(engine.close)
        context_thread.shutdown(wait=False)

    app = FastAPI(title="ftatlas serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.pool, app.state.engine, app.state.limits, app.state.runs = pool, engine, limits, runs
    gate = Gate(limits.max_queue, limits.retry_after_s)
    app.state.gate = gate
    app.add_middleware(GuardMiddleware, limits=limits)
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": len(pool.models), "inside": gate.inside}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": served_for.cards()}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request) -> Any:
        served = _chat_model(await served_for(req.model))
        msgs = [Message("system" if m.role == "developer" else m.role, m.text()) for m in req.messages]
        gate.enter()
        try:
            loop = asyncio.get_running_loop()
            prompt, info = await loop.run_in_executor(context_thread, served.render, msgs)
            run = _Generation(engine, limits, served, [prompt], req)
        except BaseException:
            gate.leave()
            raise
        return await run.answer("chat", gate, {"sources": info} if info else {})

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> Any:
        served = _chat_model(await served_for(req.model))
        gate.enter()
        try:
            run = _Generation(engine, limits, served, req.prompts(), req, echo=req.echo)
        except BaseException:
            gate.leave()
            raise
        return await run.answer("text", gate, {})

    @app.post("/v1/score")
    async def score(req: ScoreRequest) -> dict:
        served = await served_for(req.model)
        if served.kind != "reward" or served.scorer is None:
            raise ApiError(400, f"'{req.model}' is not a reward model; /v1/score serves reward runs", "model")
        prompts = [p.prompt if isinstance(p.prompt, str) else [{"role": m.role, "content": m.text()}
                                                             for m in p.prompt] for p in req.pairs]
        responses = [p.response for p in req.pairs]
        gate.enter()
        try:
            scores = await _on_engine(engine, lambda: served.scorer(prompts, responses), "scoring failed")
        finally:
            gate.leave()
        return {"object": "list", "model": served.id,
                "data": [{"object": "score", "index": i, "score": s} for i, s in enumerate(scores)]}

    return app


class _Models:
    """Model id -> served model: the pool's, and with a runs root its finished runs, each loaded on its first
    request on the engine's worker thread, between batches (loading never overlaps generation on a base it
    joins). Concurrent first requests for one run wait on one load."""

    def __init__(self, pool: Pool, engine: Engine, runs: RunsRoot | None) -> None:
        self.pool, self.engine, self.runs = pool, engine, runs
        self.loading: dict[str, asyncio.Future] = {}

    async def __call__(self, model_id: str) -> Served:
        runs = self.runs
        if runs is None or model_id in self.pool.models or runs.path(model_id) is None:
            return self.pool.get(model_id)  # 404 model_not_found for an unknown id
        if model_id not in self.loading:
            self.loading[model_id] = asyncio.ensure_future(
                _on_engine(self.engine, lambda: runs.load(model_id), f"loading run '{model_id}' failed", "model"))
        try:
            return await asyncio.shield(self.loading[model_id])
        finally:  # loaded: the pool answers from now on; failed: the next request tries again
            if model_id in self.loading and self.loading[model_id].done():
                del self.loading[model_id]

    def cards(self) -> list[dict]:
        cards = [_model_card(s) for s in list(self.pool.models.values())]  # the worker may add some
        if self.runs is not None:
            cards += [{"id": i, "object": "model", "created": 0, "owned_by": "ftatlas", "ftatlas": self.runs.card(i)}
                      for i in self.runs.ids()]
        return cards


class _Stream(StreamingResponse):
    """Server-sent events that run ``on_close`` however the response ends - also when the client left before
    the first chunk, where the generator's own ``finally`` never runs."""

    def __init__(self, chunks: AsyncIterator[str], on_close: Any) -> None:
        super().__init__(chunks, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()


def _model_card(s: Served) -> dict:
    extra = {"kind": s.kind, "adapter": s.adapter, "source": s.source, "backend": s.backend,
             "context": s.context.name if s.context is not None else None, "loaded": True}
    return {"id": s.id, "object": "model", "created": s.created, "owned_by": "ftatlas", "ftatlas": extra}


def _chat_model(served: Served) -> Served:
    if served.kind != "chat":
        raise ApiError(400, f"'{served.id}' is a {served.kind} model; it answers POST /v1/score", "model")
    return served


async def _on_engine(engine: Engine, fn: Any, failed: str, param: str | None = None) -> Any:
    """``fn()`` on the engine's worker thread; an error answers 400 ``"<failed>: <error>"`` (an ApiError as is)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except ApiError as e:
            loop.call_soon_threadsafe(fut.set_exception, e)
            return
        except Exception as e:
            log.warning("%s", failed, exc_info=True)
            loop.call_soon_threadsafe(fut.set_exception, ApiError(400, f"{failed}: {e}", param))
            return
        loop.call_soon_threadsafe(fut.set_result, result)

    engine.call(run)
    return await fut


class _Generation:
    """One request's jobs (prompts x n), their event queue, and the OpenAI-shaped answer."""

    def __init__(self, engine: Engine, limits: Limits, served: Served, prompts: list[str], req: Sampling,
                 echo: bool = False) -> None:
        self.engine, self.served, self.req, self.echo, self.prompts = engine, served, req, echo, prompts
        self.max_tokens = _max_tokens(req, limits, served)
        if req.n > limits.max_n:
            raise ApiError(400, f"n: at most {limits.max_n} choices per request", "n")
        self.id = f"{'chatcmpl' if isinstance(req, ChatRequest) else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.timeout = limits.request_timeout_s
        deadline = time.monotonic() + limits.request_timeout_s
        decode = _decode(served, req)
        self.jobs: list[Job] = []
        self.gate: Gate | None = None
        self.prompt_tokens = 0
        for prompt in prompts:
            ids = served.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            _check_prompt(served, ids, self.max_tokens, limits)
            self.prompt_tokens += len(ids)
            for _ in range(req.n):
                index = len(self.jobs)
                self.jobs.append(Job(served.id, prompt, ids, self.max_tokens, decode, req.stop or [],
                                     self._emitter(index), deadline))

    def _emitter(self, index: int) -> Any:
        return lambda ev: self.loop.call_soon_threadsafe(self.events.put_nowait, (index, ev))

    async def answer(self, kind: str, gate: Gate, extra: dict) -> Any:
        for job in self.jobs:
            self.engine.submit(job)
        self.gate = gate
        if self.req.stream:
            return _Stream(self._stream(kind, extra), self.close)
        try:
            await self._wait_all()
        finally:
            self.close()
        if any(j.finish == "timeout" for j in self.jobs):
            raise ApiError(504, f"the request ran past the server's limit of {self.timeout:g} s",
                           code="timeout")
        return JSONResponse({**self._envelope(kind), "choices": [self._choice(kind, j, i)
                                                                 for i, j in enumerate(self.jobs)],
                             "usage": self._usage(), **extra})

    async def _next(self) -> tuple[int, tuple[str, Any]]:
        # The worker enforces each job's deadline; this wait covers a worker busy with a long batch.
        try:
            return await asyncio.wait_for(self.events.get(), self.timeout + 5)
        except TimeoutError:
            for j in self.jobs:
                j.finish = j.finish or "timeout"
            raise ApiError(504, f"the request ran past the server's limit of {self.timeout:g} s",
                           code="timeout") from None

    async def _wait_all(self) -> None:
        open_jobs = len(self.jobs)
        while open_jobs:
            _, (what, payload) = await self._next()
            if what == "error":
                raise ApiError(500, payload)
            open_jobs -= what == "done"

    def close(self) -> None:
        """Drop unfinished rows and free the admission slot (once, whichever path ends the request)."""
        for j in self.jobs:
            j.cancelled.set()
        if self.gate is not None:
            self.gate.leave()
            self.gate = None

    async def _stream(self, kind: str, extra: dict) -> AsyncIterator[str]:
        """SSE chunks; on a client disconnect the server cancels this generator and ``finally`` frees the
        slot and tells the worker to drop the rows."""
        try:
            if kind == "chat":
                for i in range(len(self.jobs)):
                    yield _sse({**self._envelope(kind, chunk=True), **(extra if i == 0 else {}),
                                "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None, "logprobs": None}]})
            open_jobs = len(self.jobs)
            while open_jobs:
                try:
                    index, (what, payload) = await self._next()
                except ApiError as e:
                    yield _sse(e.body())
                    break
                if what == "error":
                    yield _sse(ApiError(500, payload).body())
                    break
                if what == "delta":
                    yield _sse({**self._envelope(kind, chunk=True), "choices": [self._delta(kind, index, payload)]})
                else:
                    open_jobs -= 1
                    reason = _reason(payload)
                    yield _sse({**self._envelope(kind, chunk=True),
                                "choices": [self._delta(kind, index, "", reason)]})
            if self.req.stream_options is not None and self.req.stream_options.include_usage:
                yield _sse({**self._envelope(kind, chunk=True), "choices": [], "usage": self._usage()})
            yield "data: [DONE]\n\n"
        finally:
            self.close()

    def _envelope(self, kind: str, chunk: bool = False) -> dict:
        obj = "chat.completion.chunk" if chunk and kind == "chat" else "chat.completion" if kind == "chat" \
            else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.served.id}

    def _choice(self, kind: str, job: Job, index: int) -> dict:
        reason = _reason(job.finish)
        if kind == "chat":
            return {"index": index, "message": {"role": "assistant", "content": job.text},
                    "finish_reason": reason, "logprobs": None}
        text = (job.prompt + job.text) if self.echo else job.text
        return {"index": index, "text": text, "finish_reason": reason, "logprobs": None}

    @staticmethod
    def _delta(kind: str, index: int, text: str, reason: str | None = None) -> dict:
        if kind == "chat":
            return {"index": index, "delta": {"content": text} if text or reason is None else {},
                    "finish_reason": reason, "logprobs": None}
        return {"index": index, "text": text, "finish_reason": reason, "logprobs": None}

    def _usage(self) -> dict:
        done = sum(len(j.tokens) for j in self.jobs)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": done,
                "total_tokens": self.prompt_tokens + done}


def _reason(finish: str | None) -> str:
    return "stop" if finish == "stop" else "length"


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def _max_tokens(req: Sampling, limits: Limits, served: Served) -> int:
    """What the request asks for; left out, the run's own eval.decode.max_new_tokens (the server's default for a
    plain model), within the server's limit."""
    asked = req.requested_tokens
    if asked is not None and asked > limits.max_tokens:
        raise ApiError(400, f"max_tokens: {asked} is over this server's limit of {limits.max_tokens}",
                       "max_tokens", "max_tokens_exceeded")
    return asked or min(served.max_tokens or limits.default_max_tokens, limits.max_tokens)


def _check_prompt(served: Served, ids: list[int], max_tokens: int, limits: Limits) -> None:
    window = served.window
    if len(ids) > limits.max_prompt_tokens:
        raise ApiError(400, f"the prompt has {len(ids)} tokens; this server's limit is {limits.max_prompt_tokens}",
                       "messages", "context_length_exceeded")
    if window is not None and len(ids) + max_tokens > window:
        raise ApiError(400, f"the prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) is over the model's "
                            f"context window of {window} tokens", "max_tokens", "context_length_exceeded")


def _decode(served: Served, req: Sampling) -> Any:
    """The run's own decoding (its eval.decode, greedy by default, as `ftatlas chat`), changed only where the
    request says: temperature 0 is greedy, above 0 samples."""
    update: dict[str, Any] = {"num_beams": 1}
    if req.temperature is not None:
        update["do_sample"] = req.temperature > 0
        if req.temperature > 0:
            update["temperature"] = req.temperature
    if req.top_p is not None:
        update["top_p"] = req.top_p
    if req.seed is not None:
        update["seed"] = req.seed
    return served.decode.model_copy(update=update)

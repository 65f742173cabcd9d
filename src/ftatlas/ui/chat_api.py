"""An OpenAI-shaped ``POST /v1/chat/completions`` over ``ftatlas.chat.ChatSession`` (the CLI's chat path).

The UI's chat panel speaks only the OpenAI request/response shape, so this app and ``ftatlas serve``'s
(``ftatlas.serve.app.create_app``) are interchangeable; ``ftatlas.ui.app.openai_app`` picks one. Model ids
are run names under the runs folder (or any model the CLI's ``chat`` accepts: a path, alias or hub id).
The run's context (RAG passages, few-shot examples) is returned in the ``sources`` extension field, as
``ftatlas serve`` does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ftatlas.recipe import DecodeSpec


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (stream_options, ...)
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    # Left out, each takes the run's own value (its recipe's eval.decode), as `ftatlas eval` decodes.
    max_tokens: int | None = Field(None, ge=1, le=2048)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    def decode(self, run_decode: DecodeSpec) -> DecodeSpec:
        """The run's decoding with this request's fields on top (temperature 0 = greedy)."""
        d = run_decode.model_dump()
        if self.max_tokens is not None:
            d["max_new_tokens"] = self.max_tokens
        if self.temperature is not None:
            d["do_sample"] = self.temperature > 0
            d["temperature"] = self.temperature or 1.0
        if self.top_p is not None:
            d["top_p"] = self.top_p
        if self.seed is not None:
            d["seed"] = self.seed
        return DecodeSpec(**d)


def run_decode(target: str) -> DecodeSpec:
    """A run's ``eval.decode`` from its recipe.yaml; the defaults for a plain model."""
    recipe = Path(target) / "recipe.yaml"
    if recipe.is_file():
        data = yaml.safe_load(recipe.read_text()) or {}
        return DecodeSpec(**((data.get("eval") or {}).get("decode") or {}))
    return DecodeSpec()


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


class Sessions:
    """Loaded models by id, least recently used dropped beyond ``keep`` (a CPU holds a few small models)."""

    def __init__(self, resolve: Callable[[str], str], keep: int = 2) -> None:
        self.resolve = resolve
        self.keep = keep
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.lock = threading.Lock()  # one generation at a time: the CPU is the bottleneck anyway

    def get(self, model: str, decode: DecodeSpec) -> Any:
        from ftatlas.chat import ChatSession

        if model not in self._cache:
            self._cache[model] = ChatSession.open(self.resolve(model), decode)
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
        self._cache.move_to_end(model)
        session = self._cache[model]
        session.decode = decode
        return session


def _reply(session: Any, messages: list[ChatMessage]) -> tuple[str, dict[str, Any]]:
    """Answer the last user message with the earlier ones as history (the request carries the whole chat)."""
    from ftatlas.data.records import Message

    *history, last = messages
    if last.role != "user":
        raise ValueError("the last message must have role 'user'")
    session.history = [Message(m.role, m.content) for m in history]
    answer = session.reply(last.content)
    return answer, session.last_info


def create_app(runs_root: Path) -> FastAPI:
    """The OpenAI chat endpoint; ``model`` is a run name under ``runs_root`` or anything ``ftatlas chat`` takes."""
    from ftatlas.ui.runs_view import list_runs

    def resolve(model: str) -> str:
        run = runs_root / model
        return str(run) if (run / "recipe.yaml").is_file() else model

    sessions = Sessions(resolve)
    api = FastAPI(title="ftatlas chat (OpenAI-compatible)")

    @api.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, e: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in e.errors())
        return openai_error(400, f"invalid request: {where}")

    @api.get("/v1/models")
    def models() -> dict[str, Any]:
        data = [{"id": r["name"], "object": "model", "owned_by": "ftatlas"} for r in list_runs(runs_root)
                if r["weights"] or r["method"] == "none"]
        return {"object": "list", "data": data}

    @api.post("/v1/chat/completions", response_model=None)
    def chat_completions(req: ChatRequest) -> dict[str, Any] | JSONResponse:
        from ftatlas.cli.common import USER_ERRORS

        try:
            decode = req.decode(run_decode(resolve(req.model)))
            with sessions.lock:
                session = sessions.get(req.model, decode)
                answer, info = _reply(session, req.messages)
                tok = session.loaded.tokenizer
        except USER_ERRORS as e:
            return openai_error(404 if isinstance(e, FileNotFoundError) else 400, str(e))
        prompt_tokens = sum(len(tok(m.content, add_special_tokens=False).input_ids) for m in req.messages)
        completion_tokens = len(tok(answer, add_special_tokens=False).input_ids)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                         "finish_reason": "length" if completion_tokens >= decode.max_new_tokens else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "sources": info,  # RAG passages / few-shot examples (the field serve uses); OpenAI clients ignore it
        }

    return api

"""Teachers for ``ftatlas data synth``: a model that answers chat messages, local or behind an HTTP endpoint.

- :class:`EndpointTeacher`: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp,
  ``ftatlas serve``, a hosted API); the standard library's HTTP client, no SDK needed.
- :class:`LocalTeacher`: a run dir or any model source ftatlas loads (alias, dir, .gguf, hub id), generating
  with the same batched ``generate`` evaluation uses.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Protocol

from ftatlas.recipe import DecodeSpec

Chat = list[dict[str, str]]


class TeacherError(ValueError):
    """The teacher could not be reached or answered something unreadable."""


class Teacher(Protocol):
    name: str

    def complete(self, chats: Sequence[Chat], decode: DecodeSpec) -> list[str]: ...


class EndpointTeacher:
    """POSTs each chat to ``<url>/v1/chat/completions`` (``url`` may already end in ``/v1``)."""

    def __init__(self, url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0) -> None:
        base = url.rstrip("/")
        self.url = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self.model, self.api_key, self.timeout = model, api_key, timeout
        self.name = f"{model}@{url}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-given URL
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise TeacherError(f"teacher {self.url} answered HTTP {e.code}: {e.read()[:300]!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise TeacherError(f"teacher {self.url} unreachable: {e}") from None
        except json.JSONDecodeError as e:
            raise TeacherError(f"teacher {self.url} answered non-JSON: {e}") from None

    def complete(self, chats: Sequence[Chat], decode: DecodeSpec) -> list[str]:
        out = []
        for i, chat in enumerate(chats):
            body = {"model": self.model, "messages": chat, "max_tokens": decode.max_new_tokens,
                    "temperature": decode.temperature if decode.do_sample else 0.0, "seed": decode.seed + i}
            if decode.do_sample:
                body["top_p"] = decode.top_p
            data = self._post(body)
            try:
                out.append(data["choices"][0]["message"]["content"] or "")
            except (KeyError, IndexError, TypeError):
                raise TeacherError(f"teacher {self.url}: no choices[0].message.content in {str(data)[:200]}") from None
        return out


class LocalTeacher:
    """A model loaded in this process; chats are rendered with its own chat template."""

    def __init__(self, source: str, batch_size: int = 8, progress: bool = True) -> None:
        from ftatlas.models.device import resolve_precision
        from ftatlas.models.trained import load_run_or_model

        self.loaded, _, _ = load_run_or_model(source)
        self.autocast = resolve_precision("auto", next(self.loaded.model.parameters()).device.type).autocast
        self.batch_size, self.progress, self.name = batch_size, progress, source

    def complete(self, chats: Sequence[Chat], decode: DecodeSpec) -> list[str]:
        from ftatlas.data.records import Message
        from ftatlas.data.templating import render_prompt
        from ftatlas.evaluate.generation import generate

        tok = self.loaded.tokenizer
        prompts = [render_prompt(tok, [Message(m["role"], m["content"]) for m in chat]) for chat in chats]
        return generate(self.loaded.model, tok, prompts, decode, batch_size=self.batch_size, autocast=self.autocast,
                        progress=self.progress, desc="teacher")


def make_teacher(spec: str, *, model: str = "default", api_key_env: str = "OPENAI_API_KEY",
                 batch_size: int = 8, progress: bool = True) -> Teacher:
    """``http(s)://...`` -> an endpoint; anything else -> a local model or run dir."""
    if spec.startswith(("http://", "https://")):
        return EndpointTeacher(spec, model, os.environ.get(api_key_env))
    return LocalTeacher(spec, batch_size, progress)

"""A multi-turn chat with a trained run or any model, rendered with the tokenizer's own template."""

from __future__ import annotations

from ftatlas.context.base import Context, context_for
from ftatlas.data.records import Message
from ftatlas.data.templating import render_prompt
from ftatlas.evaluate.generation import generate
from ftatlas.models import Loaded, require_chat_template, resolve_precision
from ftatlas.models.trained import load_run_or_model
from ftatlas.recipe import DecodeSpec


class ChatSession:
    def __init__(self, loaded: Loaded, decode: DecodeSpec, system: str | None = None,
                 context: Context | None = None) -> None:
        require_chat_template(loaded.tokenizer, "chat")
        self.loaded = loaded
        self.context = context
        self.last_info: dict = {}
        self.decode = decode
        self.system = system
        device = next(loaded.model.parameters()).device.type
        self.autocast = resolve_precision("auto", device).autocast
        self.reset()

    @classmethod
    def open(cls, target: str, decode: DecodeSpec, system: str | None = None, context: str | None = None,
             context_options: list[str] | None = None) -> ChatSession:
        """A run brings its recipe's context (e.g. rag over its index); ``context`` names another one."""
        loaded, recipe, _run = load_run_or_model(target)
        return cls(loaded, decode, system, context_for(recipe, loaded.tokenizer, context, context_options))

    def reset(self) -> None:
        self.history: list[Message] = [Message("system", self.system)] if self.system else []

    def reply(self, user: str) -> str:
        self.history.append(Message("user", user))
        messages, self.last_info = self.history, {}
        if self.context is not None:  # the history keeps the user's words; the context is added per turn
            aug = self.context.augment([self.history])[0]
            messages, self.last_info = aug.messages, aug.info
        prompt = render_prompt(self.loaded.tokenizer, messages)
        answer = generate(self.loaded.model, self.loaded.tokenizer, [prompt], self.decode,
                          batch_size=1, autocast=self.autocast, progress=False)[0]
        self.history.append(Message("assistant", answer))
        return answer

"""What every context mode provides: ``augment(prompts) -> prompts with the mode's additions``.

A prompt is the list of messages before the answer. Every mode shares two prompt-engineering knobs:
``system`` (put before the row's own system message, if any) and ``template`` (the final user turn,
with ``{input}`` standing for the question). Modes add their material on top: examples as prior turns
(few_shot) or passages inside the final user turn (rag).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from transformers import PreTrainedTokenizerBase

from ftatlas.data.records import Conversation, Message
from ftatlas.registry import Registry


class ContextParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    system: str | None = Field(None, description="system prompt (persona, output format), before the row's own")
    template: str | None = Field(None, description="final user turn with {input} for the question, "
                                                   "e.g. '{input}\\n\\nAnswer with the value only.'")
    train: bool = Field(False, description="apply this context to training prompts too (e.g. RAG-aware "
                                           "fine-tuning); default: inference only")

    @field_validator("template")
    @classmethod
    def _has_input(cls, v: str | None) -> str | None:
        if v is not None and "{input}" not in v:
            raise ValueError("template must contain {input} (where the question goes)")
        return v


@dataclass
class Augmented:
    messages: list[Message]
    info: dict[str, Any] = field(default_factory=dict)  # what was added, e.g. {"passages": ["a.md#2"]}


class Context:
    """Base class: subclasses set ``Params`` and may override ``augment``."""

    name: str = ""
    Params: type[ContextParams] = ContextParams
    summary: str = ""

    def __init__(self, params: ContextParams, tokenizer: PreTrainedTokenizerBase,
                 train_rows: list[Conversation] | None = None) -> None:
        self.params = params
        self.tokenizer = tokenizer
        self.train_rows = train_rows or []

    @property
    def is_identity(self) -> bool:
        return False

    def augment(self, prompts: list[list[Message]]) -> list[Augmented]:
        return [Augmented(self.frame(p)) for p in prompts]

    # -- shared pieces -----------------------------------------------------------------------------------
    def templated(self, question: str) -> str:
        return self.params.template.replace("{input}", question) if self.params.template else question

    def frame(self, prompt: list[Message], user: str | None = None, system: bool = True) -> list[Message]:
        """Template the final user turn (or put ``user`` there verbatim); add ``system`` unless told not to."""
        msgs = list(prompt)
        idx = last_user(msgs)
        if idx is not None:
            msgs[idx] = Message("user", self.templated(msgs[idx].content) if user is None else user)
        if system and self.params.system:
            if msgs and msgs[0].role == "system":
                msgs[0] = Message("system", f"{self.params.system}\n\n{msgs[0].content}")
            else:
                msgs.insert(0, Message("system", self.params.system))
        return msgs

    def count_tokens(self, messages: list[Message]) -> int:
        from ftatlas.data.templating import render_prompt

        return len(self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"])


def last_user(messages: list[Message]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return i
    return None


def query_of(prompt: list[Message]) -> str:
    """The text retrieval and example selection look at: the final user turn."""
    i = last_user(prompt)
    return prompt[i].content if i is not None else ""


CONTEXTS: Registry[type[Context]] = Registry("context")


def register(name: str):
    """``@register("rag")``: add the class to CONTEXTS and record its name on it."""
    return CONTEXTS.register_named(name)


def build_context(name: str, params: dict[str, Any] | ContextParams, tokenizer: PreTrainedTokenizerBase,
                  train_rows: list[Conversation] | None = None) -> Context:
    """The context ``name``; a streamed training split lends its first rows (e.g. as a few-shot pool)."""
    from ftatlas.data.stream import sample

    cls = CONTEXTS.get(name)
    p = params if isinstance(params, ContextParams) else cls.Params(**params)
    return cls(p, tokenizer, sample(train_rows) if train_rows is not None else None)


def augment_conversations(ctx: Context, rows: list[Conversation]) -> list[Conversation]:
    """Training rows with the context applied to the prompt of their final assistant turn."""
    chat = [r for r in rows if not r.is_text]
    prompts = [r.prompt_and_reference()[0] for r in chat]
    replaced = {
        id(r): Conversation(a.messages + r.messages[len(p):], source=r.source, line=r.line, meta=r.meta)
        for r, p, a in zip(chat, prompts, ctx.augment(prompts), strict=True)
    }
    return [replaced.get(id(r), r) for r in rows]


def resolve_context(recipe: Any | None, name: str | None, options: list[str] | None) -> tuple[str, dict[str, Any]]:
    """The context for eval/chat: the run's recipe context, replaced by ``name`` and/or amended by ``key=value``.

    Naming another mode than the run's starts from that mode's defaults; the same mode keeps the run's params.
    """
    from ftatlas.recipe import parse_overrides

    base_name = recipe.context.name if recipe is not None else "zero_shot"
    base = recipe.context.params() if recipe is not None else {}
    chosen = name or base_name
    params = dict(base) if chosen == base_name else {}
    params.update(parse_overrides(options or []))
    cls = CONTEXTS.get(chosen)
    try:
        cls.Params(**params)
    except ValidationError as e:
        from ftatlas.recipe import format_errors

        raise ValueError(f"context {chosen!r}: {format_errors(e, prefix='context', root=cls.Params)}") from None
    return chosen, params


def context_for(recipe: Any | None, tokenizer: PreTrainedTokenizerBase, name: str | None = None,
                options: list[str] | None = None) -> Context | None:
    """Build the context eval/chat apply (None when it changes nothing)."""
    chosen, params = resolve_context(recipe, name, options)
    if chosen == "zero_shot" and not params:
        return None
    train_rows = None
    if recipe is not None and chosen == "few_shot" and "examples" not in params:
        from ftatlas.data.splits import load_splits

        train_rows = load_splits(recipe.data).train
    return build_context(chosen, params, tokenizer, train_rows)

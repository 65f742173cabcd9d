"""Prompt-only data for objectives that generate and score (GRPO, RLOO, PPO, rejection sampling).

A :class:`PromptRow` is the chat turns the model answers (ending with a user turn) plus the row's other
columns (``reference`` and anything else), which reach reward functions as keyword arguments.

Row shapes read (``.jsonl`` / ``.json``; every bad row is a DataError naming file, line and field):

- ``{"prompt": "text" | [{"role", "content"}...], <any other columns>}``, TRL's prompt-only form;
- any conversation format the SFT readers take (messages, sharegpt, alpaca): the turns before the last
  assistant turn are the prompt and that turn's content becomes the ``reference`` column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftatlas.data.errors import DataError
from ftatlas.data.readers import (
    _CONVERTERS,
    MESSAGES_ROLES,
    _checked_path,
    _detect_row,
    _Invalid,
    _json_type,
    _turns,
    iter_rows,
)
from ftatlas.data.records import Conversation, Message

RESERVED = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric",
            "prompt_messages")


@dataclass
class PromptRow:
    """A prompt to answer and the columns a reward function may check the answer against."""

    messages: list[Message]
    columns: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    line: int = 0

    is_text = False  # prompts are chat turns; the model's chat template renders them

    @property
    def reference(self) -> str | None:
        ref = self.columns.get("reference")
        return None if ref is None else str(ref)

    def prompt_and_reference(self) -> tuple[list[Message], str]:
        """Same shape as :meth:`Conversation.prompt_and_reference`, so held-out evaluation works unchanged.
        Rows without a ``reference`` column (e.g. scored by a reward model only) compare against ""."""
        return self.messages, self.reference or ""

    @property
    def messages_json(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]

    def reward_columns(self) -> dict[str, Any]:
        """What reward functions get as kwargs: the row's columns plus its prompt turns (``prompt_messages``)."""
        return {**self.columns, "prompt_messages": self.messages_json}

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.messages_json, **self.columns}


def from_conversation(conv: Conversation) -> PromptRow:
    """Turns before the last assistant turn become the prompt; that turn becomes the ``reference``."""
    messages, reference = conv.prompt_and_reference()
    return PromptRow(list(messages), {"reference": reference}, conv.source, conv.line)


def _prompt_messages(row: dict) -> list[Message]:
    value = row["prompt"]
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid("prompt", "must not be empty")
        return [Message("user", value)]
    if not isinstance(value, list):
        raise _Invalid("prompt", f"expected a string or an array of messages, got {_json_type(value)}")
    turns = _turns(row, "prompt", "role", "content", MESSAGES_ROLES)
    if turns[-1].message.role == "assistant":
        raise _Invalid(turns[-1].role_field, "a prompt ends with a user (or system) turn, not an assistant turn")
    return [t.message for t in turns]


def _row(file: Path, line: int, row: dict) -> PromptRow:
    if "prompt" in row:
        columns = {k: v for k, v in row.items() if k != "prompt"}
        for key in columns:
            if key in RESERVED:
                raise _Invalid(key, f"column name {key!r} is reserved for the reward-function call; rename it")
        return PromptRow(_prompt_messages(row), columns, str(file), line)
    conv = _CONVERTERS[_detect_row(file, line, row)](row)
    if conv.is_text:
        raise _Invalid("text", "plain-text rows have no prompt; use {'prompt': ...} rows or conversations")
    conv.source, conv.line = str(file), line
    return from_conversation(conv)


def read_prompts(path: str | Path) -> list[PromptRow]:
    """Read every row of ``path`` as a prompt row; raise DataError on any bad row."""
    p = _checked_path(path)
    if p.suffix.lower() == ".txt":
        raise DataError(p, None, None, "prompt data is .jsonl or .json with a 'prompt' column (or conversations)")
    rows = []
    for line, row in iter_rows(p):
        try:
            rows.append(_row(p, line, row))
        except _Invalid as e:
            raise DataError(p, line, e.field, e.message) from None
    if not rows:
        raise DataError(p, None, None, "no rows")
    return rows

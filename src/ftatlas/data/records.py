"""The canonical record every reader produces: a conversation (or plain text) plus where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass
class Conversation:
    """One training/eval example. ``text`` set (and ``messages`` empty) for plain-text rows."""

    messages: list[Message] = field(default_factory=list)
    text: str | None = None
    source: str = ""
    line: int = 0
    meta: dict = field(default_factory=dict)  # task extras, e.g. {"evidence": [...]} for retrieval eval

    @property
    def is_text(self) -> bool:
        return self.text is not None

    def prompt_and_reference(self) -> tuple[list[Message], str]:
        """Split for evaluation: everything before the last assistant turn, and that turn's content."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i].role == "assistant":
                return self.messages[:i], self.messages[i].content
        raise ValueError(f"{self.source}:{self.line}: no assistant message to evaluate against")

    def to_json(self) -> dict:
        if self.is_text:
            return {"text": self.text}
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages]}

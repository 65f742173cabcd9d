"""Preference data: one canonical record for paired data (:class:`PreferencePair`) and one for unpaired
KTO-style data (:class:`UnpairedExample`), and readers that turn every supported row shape into them.

A ``PreferencePair`` is a prompt with two answers, ``chosen`` (better) and ``rejected`` (worse):

- conversational form (the usual one): ``prompt`` is a list of :class:`Message` ending with a user turn;
  ``chosen`` and ``rejected`` are the assistant's reply texts. The chat template is applied at training time.
- standard (plain text) form: ``prompt_text`` is raw text that ``chosen``/``rejected`` continue; no template.

An ``UnpairedExample`` is a prompt, one ``completion`` and a ``label`` (True = desirable).

Row shapes read (``.jsonl`` / ``.json``; every bad row is a DataError naming file, line and field):

- ``trl``: TRL's ``{"prompt", "chosen", "rejected"}``, strings (standard) or message lists
  (conversational); also TRL's implicit-prompt form (``chosen``/``rejected`` full conversations sharing
  their prompt turns).
- ``alpaca``: ``{"instruction", "input"?, "system"?, "chosen", "rejected"}`` (strings).
- ``sharegpt``: ``{"conversations": [{"from", "value"}...], "system"?, "chosen": {"from", "value"},
  "rejected": {"from", "value"}}`` (LLaMA-Factory's pairwise sharegpt; chosen/rejected may be strings).
- ``kto`` (unpaired): TRL's ``{"prompt", "completion", "label": true|false}``.

Paired rows can also feed an unpaired objective (each pair becomes one desirable and one undesirable
example, see :func:`to_unpaired`). Producers (e.g. rejection sampling) write pairs with
:meth:`PreferencePair.to_json`, which emits the TRL conversational/standard row these readers read back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftatlas.data.errors import DataError
from ftatlas.data.readers import (
    MESSAGES_ROLES,
    SHAREGPT_ROLES,
    _checked_path,
    _Invalid,
    _json_type,
    _nonempty,
    _str,
    _Turn,
    _turns,
    iter_rows,
)
from ftatlas.data.records import Conversation, Message

PAIR_FORMATS = ("trl", "alpaca", "sharegpt")
UNPAIRED_FORMATS = ("kto",)
_PAIR_SHAPES = ("trl (prompt, chosen, rejected), alpaca (instruction, chosen, rejected), "
                "sharegpt (conversations, chosen, rejected)")


def _messages_json(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


@dataclass
class PreferencePair:
    """A prompt with a better (``chosen``) and a worse (``rejected``) answer."""

    prompt: list[Message] = field(default_factory=list)
    chosen: str = ""
    rejected: str = ""
    prompt_text: str | None = None  # standard form: raw text prompt (then ``prompt`` is empty)
    source: str = ""
    line: int = 0

    @property
    def is_text(self) -> bool:
        return self.prompt_text is not None

    @property
    def text(self) -> str | None:
        """Standard form: prompt + chosen as one text (what a plain-text metric such as perplexity scores)."""
        return None if self.prompt_text is None else self.prompt_text + self.chosen

    def to_json(self) -> dict[str, Any]:
        """TRL's row: conversational (message lists) or standard (strings). Readers read it back as ``trl``."""
        if self.is_text:
            return {"prompt": self.prompt_text, "chosen": self.chosen, "rejected": self.rejected}
        return {"prompt": _messages_json(self.prompt),
                "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}]}

    def prompt_and_reference(self) -> tuple[list[Message], str]:
        """For generation eval: the prompt, and ``chosen`` as the reference answer."""
        return self.conversation().prompt_and_reference()

    def conversation(self, which: str = "chosen") -> Conversation:
        """The prompt followed by one answer, e.g. to generate against ``chosen`` as the reference."""
        answer = self.chosen if which == "chosen" else self.rejected
        if self.is_text:
            return Conversation(text=self.prompt_text + answer, source=self.source, line=self.line)
        return Conversation([*self.prompt, Message("assistant", answer)], source=self.source, line=self.line)


@dataclass
class UnpairedExample:
    """A prompt, one completion and whether it is desirable (KTO's unpaired form)."""

    prompt: list[Message] = field(default_factory=list)
    completion: str = ""
    label: bool = True
    prompt_text: str | None = None
    source: str = ""
    line: int = 0

    @property
    def is_text(self) -> bool:
        return self.prompt_text is not None

    @property
    def text(self) -> str | None:
        return None if self.prompt_text is None else self.prompt_text + self.completion

    def to_json(self) -> dict[str, Any]:
        if self.is_text:
            return {"prompt": self.prompt_text, "completion": self.completion, "label": self.label}
        return {"prompt": _messages_json(self.prompt),
                "completion": [{"role": "assistant", "content": self.completion}], "label": self.label}

    def prompt_and_reference(self) -> tuple[list[Message], str]:
        """For generation eval of desirable examples: the prompt and the completion."""
        return self.conversation().prompt_and_reference()

    def conversation(self) -> Conversation:
        if self.is_text:
            return Conversation(text=self.prompt_text + self.completion, source=self.source, line=self.line)
        return Conversation([*self.prompt, Message("assistant", self.completion)], source=self.source, line=self.line)


def to_unpaired(pairs: list[PreferencePair]) -> list[UnpairedExample]:
    """Each pair -> (prompt, chosen, True) and (prompt, rejected, False)."""
    out = []
    for p in pairs:
        for completion, label in ((p.chosen, True), (p.rejected, False)):
            out.append(UnpairedExample(list(p.prompt), completion, label, p.prompt_text, p.source, p.line))
    return out


# --- row converters ------------------------------------------------------------------------------------


def _check_prompt(turns: list[_Turn], list_field: str) -> list[Message]:
    if not turns:
        raise _Invalid(list_field, "the prompt has no messages")
    for i, turn in enumerate(turns):
        if turn.message.role == "system" and i > 0:
            raise _Invalid(turn.role_field, "a system message is only allowed as the first message")
    if turns[-1].message.role != "user":
        raise _Invalid(turns[-1].role_field, "the prompt must end with a user message (the answer follows it)")
    return [t.message for t in turns]


def _answer(row: dict, key: str) -> tuple[str, bool]:
    """A completion given as a string (standard) or a one-assistant-message list (conversational)."""
    if key not in row:
        raise _Invalid(key, f"missing field '{key}'")
    value = row[key]
    if isinstance(value, str):
        text, chat = value, False
    elif isinstance(value, list):
        turns = _turns(row, key, "role", "content", MESSAGES_ROLES)
        if len(turns) != 1 or turns[0].message.role != "assistant":
            raise _Invalid(key, "expected exactly one assistant message (multi-turn answers are not supported)")
        text, chat = turns[0].message.content, True
    else:
        raise _Invalid(key, f"expected a string or a list of messages, got {_json_type(value)}")
    if not text.strip():
        raise _Invalid(key, "must not be empty")
    return text, chat


def _prompt(row: dict, key: str = "prompt") -> tuple[list[Message], str | None]:
    value = row.get(key)
    if isinstance(value, list):
        return _check_prompt(_turns(row, key, "role", "content", MESSAGES_ROLES), key), None
    return [], _nonempty(row, key)


def _pair(prompt: list[Message], text: str | None, chosen: str, rejected: str, where: str) -> PreferencePair:
    if chosen == rejected:
        raise _Invalid(where, "chosen and rejected are identical: the pair carries no preference")
    return PreferencePair(prompt, chosen, rejected, text)


def _implicit(row: dict) -> PreferencePair:
    """TRL's implicit prompt: chosen/rejected are whole conversations sharing everything but the last turn."""
    chosen = _turns(row, "chosen", "role", "content", MESSAGES_ROLES)
    rejected = _turns(row, "rejected", "role", "content", MESSAGES_ROLES)
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1].message.role != "assistant":
            raise _Invalid(turns[-1].role_field, f"the last message of '{name}' must be the assistant's answer")
    if [t.message for t in chosen[:-1]] != [t.message for t in rejected[:-1]] or len(chosen) != len(rejected):
        raise _Invalid("rejected", "without 'prompt', chosen and rejected must share every message but the last")
    prompt = _check_prompt(chosen[:-1], "chosen")
    return _pair(prompt, None, chosen[-1].message.content, rejected[-1].message.content, "rejected")


def _trl(row: dict) -> PreferencePair:
    if "prompt" not in row and isinstance(row.get("chosen"), list):
        return _implicit(row)
    prompt, text = _prompt(row)
    chosen, chat_c = _answer(row, "chosen")
    rejected, chat_r = _answer(row, "rejected")
    if not (chat_c == chat_r == (text is None)):
        raise _Invalid("prompt", "mixes the standard (strings) and conversational (message lists) forms")
    return _pair(prompt, text, chosen, rejected, "rejected")


def _system(row: dict) -> list[Message]:
    system = _str(row, "system", required=False)
    return [Message("system", system)] if system and system.strip() else []


def _alpaca(row: dict) -> PreferencePair:
    instruction = _nonempty(row, "instruction")
    extra = _str(row, "input", required=False) or ""
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return _pair([*_system(row), Message("user", user)], None, _nonempty(row, "chosen"),
                 _nonempty(row, "rejected"), "rejected")


def _sharegpt_answer(row: dict, key: str) -> str:
    value = row.get(key)
    if isinstance(value, dict):
        who = _str(value, "from", f"{key}.from")
        if SHAREGPT_ROLES.get(who) != "assistant":
            raise _Invalid(f"{key}.from", f"expected an assistant turn (gpt/assistant/model), got {who!r}")
        text = _str(value, "value", f"{key}.value") or ""
        if not text.strip():
            raise _Invalid(f"{key}.value", "must not be empty")
        return text
    if key in row and not isinstance(value, str):
        raise _Invalid(key, f"expected an object {{from, value}} or a string, got {_json_type(value)}")
    return _nonempty(row, key)


def _sharegpt(row: dict) -> PreferencePair:
    turns = _turns(row, "conversations", "from", "value", SHAREGPT_ROLES)
    prompt = _system(row) + _check_prompt(turns, "conversations")
    return _pair(prompt, None, _sharegpt_answer(row, "chosen"), _sharegpt_answer(row, "rejected"), "rejected")


def _kto(row: dict) -> UnpairedExample:
    prompt, text = _prompt(row)
    completion, chat = _answer(row, "completion")
    if chat != (text is None):
        raise _Invalid("prompt", "mixes the standard (strings) and conversational (message lists) forms")
    if "label" not in row:
        raise _Invalid("label", "missing field 'label'")
    if not isinstance(row["label"], bool):
        raise _Invalid("label", f"expected true or false, got {_json_type(row['label'])}")
    return UnpairedExample(prompt, completion, row["label"], text)


_CONVERTERS: dict[str, Callable[[dict], Any]] = {"trl": _trl, "alpaca": _alpaca, "sharegpt": _sharegpt, "kto": _kto}


def _detect(file: Path, line: int, row: dict, allowed: tuple[str, ...]) -> str:
    keys = set(row)
    if "conversations" in keys:
        fmt = "sharegpt"
    elif "instruction" in keys:
        fmt = "alpaca"
    elif {"completion", "label"} & keys:
        fmt = "kto"
    elif {"chosen", "rejected"} & keys:
        fmt = "trl"
    else:
        shapes = _PAIR_SHAPES + ("" if "kto" not in allowed else ", kto (prompt, completion, label)")
        seen = ", ".join(sorted(keys)) or "none"
        raise DataError(file, line, None, f"cannot detect a preference format from keys [{seen}]; formats: {shapes}")
    if fmt not in allowed:
        raise DataError(file, line, None, f"rows look like {fmt!r} data, but this objective needs paired "
                                          f"preference data ({_PAIR_SHAPES})")
    return fmt


def _read(path: str | Path, format: str, allowed: tuple[str, ...]) -> list[Any]:
    p = _checked_path(path)
    if p.suffix.lower() == ".txt":
        raise DataError(p, None, None, "preference data is .json or .jsonl rows, not a .txt file")
    if format != "auto" and format not in allowed:
        raise DataError(p, None, "data.format", f"format {format!r} is not preference data; "
                                                f"expected 'auto' or one of: {', '.join(allowed)}")
    records: list[Any] = []
    convert: Callable[[dict], Any] | None = None
    first_text: tuple[bool, int] | None = None
    for line, row in iter_rows(p):
        if convert is None:
            convert = _CONVERTERS[_detect(p, line, row, allowed) if format == "auto" else format]
        try:
            rec = convert(row)
        except _Invalid as e:
            raise DataError(p, line, e.field, e.message) from None
        rec.source, rec.line = str(p), line
        first_text = first_text or (rec.is_text, line)
        if rec.is_text != first_text[0]:
            form = "standard (string prompt)" if first_text[0] else "conversational (message-list prompt)"
            raise DataError(p, line, "prompt", f"the file started in the {form} form at line {first_text[1]}; "
                                               "one file uses one form")
        records.append(rec)
    if not records:
        raise DataError(p, None, None, "no rows")
    return records


def read_preference_file(path: str | Path, format: str = "auto") -> list[PreferencePair]:
    """Read paired preference rows (trl / alpaca / sharegpt) into PreferencePairs; any bad row -> DataError."""
    return _read(path, format, PAIR_FORMATS)


def read_unpaired_file(path: str | Path, format: str = "auto") -> list[UnpairedExample]:
    """Read KTO rows (prompt, completion, label); paired rows are accepted and split with :func:`to_unpaired`."""
    records = _read(path, format, PAIR_FORMATS + UNPAIRED_FORMATS)
    return to_unpaired(records) if isinstance(records[0], PreferencePair) else records



def pair_up(examples: list[UnpairedExample]) -> list[PreferencePair | UnpairedExample]:
    """Unpaired examples regrouped for evaluation: a desirable and an undesirable completion of the same prompt
    become one pair (scored by the preference metrics); a desirable one left without a partner stays as it is
    (scored by generation only). Undesirable ones left without a partner are no reference answer and are left out
    (KTO's held-out generation eval has always scored desirable completions only)."""
    def key(e: UnpairedExample) -> Any:
        return e.prompt_text if e.is_text else tuple((m.role, m.content) for m in e.prompt)

    bad: dict[Any, list[UnpairedExample]] = {}
    for e in examples:
        if not e.label:
            bad.setdefault(key(e), []).append(e)
    out: list[PreferencePair | UnpairedExample] = []
    for e in examples:
        if e.label:
            partner = bad.get(key(e)) and bad[key(e)].pop(0)
            out.append(PreferencePair(list(e.prompt), e.completion, partner.completion, e.prompt_text, e.source,
                                      e.line) if partner else e)
    return out


def as_chat(rows: list[Any]) -> list[Any]:
    """``data.template: chat``: standard-form (plain string) prompts become one user message, so the model's chat
    template is applied to them in training and evaluation; conversational rows are unchanged."""
    for r in rows:
        if r.is_text:
            r.prompt, r.prompt_text = [Message("user", r.prompt_text)], None
    return rows

"""Read alpaca / sharegpt / messages / text rows from .jsonl, .json and .txt files into Conversations.

Every row either becomes a :class:`Conversation` or raises :class:`DataError` naming file, line and field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ftatlas.data.errors import DataError
from ftatlas.data.records import ROLES, Conversation, Message
from ftatlas.data.sources import RowSource

FORMATS = ("alpaca", "sharegpt", "messages", "text")
EXTENSIONS = (".jsonl", ".json", ".txt")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "model": "assistant", "system": "system"}  # fmt: skip
MESSAGES_ROLES = {role: role for role in ROLES}
_SHAPES = "alpaca (instruction, output), sharegpt (conversations), messages (messages), text (text)"
_DETECT = (("sharegpt", {"conversations"}), ("messages", {"messages"}),
           ("alpaca", {"instruction", "output"}), ("text", {"text"}))  # fmt: skip


class _Invalid(Exception):
    """Raised by the per-format converters; turned into a DataError once file and line are known."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


class _Turn(NamedTuple):
    message: Message
    role_field: str
    content_field: str


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _str(obj: dict, key: str, field: str | None = None, *, required: bool = True) -> str | None:
    """``obj[key]`` checked to be a string; None when absent and not required."""
    field = field or key
    if key not in obj:
        if required:
            raise _Invalid(field, f"missing field '{key}'")
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise _Invalid(field, f"expected a string, got {_json_type(value)}")
    return value


def _nonempty(obj: dict, key: str) -> str:
    value = _str(obj, key) or ""
    if not value.strip():
        raise _Invalid(key, "must not be empty")
    return value


def _system_turn(row: dict) -> list[_Turn]:
    system = _str(row, "system", required=False)
    return [_Turn(Message("system", system), "system", "system")] if system and system.strip() else []


def _check(turns: list[_Turn], list_field: str) -> Conversation:
    """Shared rules: system only first, no empty assistant turn, at least one assistant turn."""
    for i, turn in enumerate(turns):
        if turn.message.role == "system" and i > 0:
            raise _Invalid(turn.role_field, "a system message is only allowed as the first message")
        if turn.message.role == "assistant" and not turn.message.content.strip():
            raise _Invalid(turn.content_field, "empty assistant content")
    if not any(turn.message.role == "assistant" for turn in turns):
        raise _Invalid(list_field, "no assistant message")
    return Conversation(messages=[turn.message for turn in turns])


def _turns(row: dict, list_key: str, role_key: str, content_key: str, roles: dict[str, str]) -> list[_Turn]:
    """Parse a non-empty list of ``{role_key, content_key}`` objects, mapping roles through ``roles``."""
    if list_key not in row:
        raise _Invalid(list_key, f"missing field '{list_key}'")
    items = row[list_key]
    if not isinstance(items, list) or not items:
        raise _Invalid(list_key, f"expected a non-empty array, got {_json_type(items) if items else 'empty'}")
    turns = []
    for i, item in enumerate(items):
        path = f"{list_key}[{i}]"
        if not isinstance(item, dict):
            raise _Invalid(path, f"expected an object, got {_json_type(item)}")
        role_field, content_field = f"{path}.{role_key}", f"{path}.{content_key}"
        role = _str(item, role_key, role_field)
        if role not in roles:
            raise _Invalid(role_field, f"unknown role {role!r}; allowed: {', '.join(roles)}")
        content = _str(item, content_key, content_field) or ""
        turns.append(_Turn(Message(roles[role], content), role_field, content_field))
    return turns


def _alpaca(row: dict) -> Conversation:
    instruction = _nonempty(row, "instruction")
    extra = _str(row, "input", required=False) or ""
    output = _str(row, "output") or ""
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    turns = [_Turn(Message("user", user), "instruction", "instruction")]
    turns.append(_Turn(Message("assistant", output), "output", "output"))
    return _check(_system_turn(row) + turns, "output")


def _sharegpt(row: dict) -> Conversation:
    turns = _turns(row, "conversations", "from", "value", SHAREGPT_ROLES)
    return _check(_system_turn(row) + turns, "conversations")


def _messages(row: dict) -> Conversation:
    return _check(_turns(row, "messages", "role", "content", MESSAGES_ROLES), "messages")


def _text(row: dict) -> Conversation:
    return Conversation(text=_nonempty(row, "text"))


_CONVERTERS: dict[str, Callable[[dict], Conversation]] = {
    "alpaca": _alpaca,
    "sharegpt": _sharegpt,
    "messages": _messages,
    "text": _text,
}


def _checked_path(path: str | Path | RowSource) -> Path:
    if isinstance(path, RowSource):  # a datasets split stands in for a file (data/sources.py)
        return path  # type: ignore[return-value]
    p = Path(path)
    if not p.exists():
        raise DataError(path, None, None, "file does not exist")
    if not p.is_file():
        raise DataError(path, None, None, "not a regular file")
    if p.suffix.lower() not in EXTENSIONS:
        supported = ", ".join(EXTENSIONS)
        raise DataError(path, None, None, f"unsupported extension {p.suffix!r}; supported: {supported}")
    return p


def _read_text(p: Path) -> str:
    raw = p.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        byte = raw[e.start:e.start + 1].hex()
        raise DataError(p, line, None, f"not valid UTF-8 (byte 0x{byte} at column {column}); the file is in another "
                                       "encoding (often latin-1 / cp1252): re-save it as UTF-8, e.g. "
                                       f"`iconv -f cp1252 -t utf-8 {p.name} > {p.stem}.utf8{p.suffix}`") from None


def _as_row(file: str | Path, line: int, obj: Any) -> tuple[int, dict]:
    if not isinstance(obj, dict):
        raise DataError(file, line, None, f"row is not a JSON object (got {_json_type(obj)})")
    return line, obj


def _jsonl_rows(p: Path, text: str) -> Iterator[tuple[int, dict]]:
    for lineno, raw in enumerate(text.split("\n"), 1):  # not splitlines(): JSON strings may hold U+2028
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(p, lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None
        yield _as_row(p, lineno, obj)


def _json_rows(p: Path, text: str) -> Iterator[tuple[int, dict]]:
    if not text.strip():
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(p, e.lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from None
    start = json.decoder.WHITESPACE.match(text, 0).end()
    if not isinstance(doc, list):
        yield _as_row(p, text.count("\n", 0, start) + 1, doc)
        return
    # The document is valid, so walk the array with raw_decode only to learn where each element starts.
    decoder, skip = json.JSONDecoder(), json.decoder.WHITESPACE.match
    idx, line, counted = start + 1, 1, 0
    for _ in doc:
        idx = skip(text, idx).end()
        line, counted = line + text.count("\n", counted, idx), idx
        obj, end = decoder.raw_decode(text, idx)
        yield _as_row(p, line, obj)
        idx = skip(text, end).end() + 1  # step over the ',' (or the closing ']')


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(1-based line where the row starts, row object)`` for a .jsonl or .json file (or ``(index, row)``
    for a datasets split, a :class:`RowSource`)."""
    if isinstance(path, RowSource):
        yield from path.rows()
        return
    p = _checked_path(path)
    suffix = p.suffix.lower()
    if suffix == ".txt":
        raise DataError(path, None, None, "iter_rows reads .json/.jsonl files; .txt files are plain text")
    text = _read_text(p)
    yield from (_jsonl_rows(p, text) if suffix == ".jsonl" else _json_rows(p, text))


def _txt_records(p: Path) -> list[Conversation]:
    """One text record per paragraph (blocks separated by blank lines)."""
    records: list[Conversation] = []
    block: list[str] = []
    for lineno, raw in enumerate([*_read_text(p).split("\n"), ""], 1):
        if raw.strip():
            block.append(raw.rstrip("\r"))
        elif block:
            records.append(Conversation(text="\n".join(block), source=str(p), line=lineno - len(block)))
            block = []
    return records


def _detect_row(file: str | Path, line: int, row: dict) -> str:
    keys = set(row)
    for fmt, wanted in _DETECT:
        if keys & wanted:
            return fmt
    seen = ", ".join(sorted(keys)) or "none"
    raise DataError(file, line, None, f"cannot detect the format from keys [{seen}]; formats: {_SHAPES}")


def detect_format(path: str | Path) -> str:
    """Guess the format from the first row (``.txt`` files are always ``text``)."""
    p = _checked_path(path)
    if p.suffix.lower() == ".txt":
        return "text"
    for line, row in iter_rows(p):
        return _detect_row(p, line, row)
    raise DataError(p, None, None, "no rows")


def iter_records(p: Path | RowSource, format: str = "auto") -> Iterator[Conversation]:
    """The rows of a .json/.jsonl file or a datasets split as Conversations, one at a time (a streamed source is
    read only as far as the caller goes); a bad row raises DataError naming where it is and the field."""
    convert: Callable[[dict], Conversation] | None = None
    for line, row in iter_rows(p):
        if convert is None:
            convert = _CONVERTERS[_detect_row(p, line, row) if format == "auto" else format]
        try:
            record = convert(row)
        except _Invalid as e:
            raise DataError(p, line, e.field, e.message) from None
        record.source, record.line = str(p), line
        yield record


def read_file(path: str | Path, format: str = "auto") -> list[Conversation]:
    """Read every row of ``path`` as ``format`` (or the detected one); raise DataError on any bad row."""
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected 'auto' or one of: {', '.join(FORMATS)}")
    p = _checked_path(path)
    if p.suffix.lower() == ".txt":
        if format not in ("auto", "text"):
            raise DataError(p, None, None, f"format {format!r} needs .json or .jsonl; .txt is plain text")
        records = _txt_records(p)
    else:
        records = list(iter_records(p, format))
    if not records:
        raise DataError(p, None, None, "no rows")
    return records

"""Rows as the data tools see them: the original row object (written back unchanged), where it came from,
the validated record, and the text that dedup/decontaminate/filter compare.

Every file the readers accept is read here: conversations (alpaca, sharegpt, messages, text, .txt
paragraphs), preference pairs (trl, alpaca, sharegpt pairs), unpaired (kto) rows and prompt-only rows.
Each row is validated by the same reader training uses, so a bad row is a DataError naming file, line and
field before any tool changes anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftatlas.data.errors import DataError
from ftatlas.data.readers import iter_rows, read_file
from ftatlas.runs import atomic_write

KINDS = ("auto", "conversations", "preference", "unpaired", "prompts", "text")


@dataclass
class Row:
    """One row of a data file: ``raw`` is written back as read; ``text`` is what the tools compare."""

    raw: dict[str, Any]
    source: str
    line: int
    text: str
    record: Any = None  # Conversation / PreferencePair / UnpairedExample / PromptRow

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def _messages_text(messages: list) -> list[str]:
    return [m.content for m in messages]


def record_text(record: Any) -> str:
    """All the words of a row (prompt and answers), one block per turn; used for hashing and n-grams."""
    if getattr(record, "text", None) is not None and not hasattr(record, "chosen"):
        return record.text  # plain-text Conversation
    parts: list[str] = []
    if hasattr(record, "chosen"):  # PreferencePair
        parts += [record.prompt_text] if record.is_text else _messages_text(record.prompt)
        parts += [record.chosen, record.rejected]
    elif hasattr(record, "completion"):  # UnpairedExample
        parts += [record.prompt_text] if record.is_text else _messages_text(record.prompt)
        parts.append(record.completion)
    elif hasattr(record, "columns"):  # PromptRow
        parts += _messages_text(record.messages)
        if record.reference:
            parts.append(record.reference)
    else:  # Conversation with messages
        parts += _messages_text(record.messages)
    return "\n".join(p for p in parts if p)


def detect_kind(path: str | Path) -> str:
    """The row kind from the first row's keys: pairs, unpaired, prompt-only or conversations."""
    p = Path(path)
    if p.suffix.lower() == ".txt":
        return "text"
    for _line, row in iter_rows(p):
        keys = set(row)
        if {"chosen", "rejected"} <= keys:
            return "preference"
        if {"completion", "label"} <= keys:
            return "unpaired"
        if "prompt" in keys and not keys & {"messages", "conversations", "instruction", "text"}:
            return "prompts"
        return "conversations"
    raise DataError(p, None, None, "no rows")


def load_table(path: str | Path, format: str = "auto", kind: str = "auto") -> list[Row]:
    """Every row of ``path`` validated as ``kind`` rows (detected by default), with its original object."""
    from ftatlas.data.splits import read_rows

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of: {', '.join(KINDS)}")
    p = Path(path)
    if p.suffix.lower() == ".txt":
        return [Row({"text": r.text}, str(p), r.line, r.text or "", r) for r in read_file(p, "text")]
    kind = detect_kind(p) if kind == "auto" else kind
    records = read_rows(str(p), format, kind)
    if kind == "unpaired" and records and len(records) != sum(1 for _ in iter_rows(p)):
        # paired rows read as unpaired become two examples each; keep one row per line for the tools
        seen: dict[int, Any] = {}
        for r in records:
            seen.setdefault(r.line, r)
        records = list(seen.values())
    raw = dict(iter_rows(p))
    return [Row(raw[r.line], str(p), r.line, record_text(r), r) for r in records]


def load_many(paths: list[str] | list[Path], format: str = "auto", kind: str = "auto") -> list[Row]:
    rows: list[Row] = []
    for path in paths:
        rows += load_table(path, format, kind)
    return rows


def write_rows(path: str | Path, rows: list[Row] | list[dict[str, Any]]) -> Path:
    """Write rows (or plain row objects) atomically: .jsonl one per line, .json an array, .txt paragraphs."""
    p = Path(path)
    objs = [r.raw if isinstance(r, Row) else r for r in rows]
    suffix = p.suffix.lower()
    if suffix == ".txt":
        bad = next((i for i, o in enumerate(objs) if set(o) != {"text"}), None)
        if bad is not None:
            raise DataError(p, None, None, f"row {bad + 1} is not plain text; write .jsonl or .json instead")
        body = "\n\n".join(o["text"].strip() for o in objs) + "\n"
    elif suffix == ".json":
        body = json.dumps(objs, ensure_ascii=False, indent=1) + "\n"
    elif suffix == ".jsonl":
        body = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)
    else:
        raise DataError(p, None, None, f"unsupported output extension {p.suffix!r}; use .jsonl, .json or .txt")
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, body)
    return p


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """The JSON report every tool writes beside its output: what was removed or changed, and why."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    return p


def default_outputs(path: str | Path, tag: str, out: str | Path | None, report: str | Path | None
                    ) -> tuple[Path, Path]:
    """``data.jsonl`` -> ``data.<tag>.jsonl`` and ``data.<tag>.report.json`` unless given."""
    p = Path(path)
    out_p = Path(out) if out else p.with_name(f"{p.stem}.{tag}{p.suffix if p.suffix != '.txt' else '.txt'}")
    rep_p = Path(report) if report else out_p.with_name(f"{out_p.stem}.report.json")
    if out_p.resolve() == p.resolve():
        raise ValueError(f"--out {out_p} would overwrite the input; choose another file")
    return out_p, rep_p

"""Read documents for RAG: .txt / .md (one document each), .jsonl (one per line, a text field), .pdf (pypdf).

A file that cannot be read (binary, empty, not UTF-8, a bad jsonl line) raises DocumentError naming the
file (and line and field); ingest records it and goes on with the other files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ftatlas.extras import MissingExtra, require

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst"}
SUFFIXES = TEXT_SUFFIXES | {".jsonl", ".pdf"}


class DocumentError(ValueError):
    """A document that cannot be ingested; the message names the file (and line/field)."""


@dataclass(frozen=True)
class Document:
    """One unit to chunk. ``doc_id`` is ``file`` or ``file:line`` for jsonl rows."""

    doc_id: str
    text: str


def find_files(sources: list[str | Path]) -> list[Path]:
    """Expand folders (recursively) into the supported files they hold; explicit files are kept as given."""
    out: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        elif p.is_file():
            out.append(p)
        else:
            raise DocumentError(f"{p}: no such file or folder")
    return out


def skipped_files(sources: list[str | Path]) -> dict[str, str]:
    """Files inside the given folders that ingest leaves out, each with the reason (never skipped unnamed)."""
    out: dict[str, str] = {}
    for src in sources:
        p = Path(src)
        for f in sorted(p.rglob("*")) if p.is_dir() else []:
            if not f.is_file():
                continue
            if any(part.startswith(".") for part in f.relative_to(p).parts):
                out[str(f)] = "hidden file or folder"
            elif f.suffix.lower() not in SUFFIXES:
                kind = f.suffix or "(none)"
                out[str(f)] = f"unsupported file type {kind!r}; supported: {', '.join(sorted(SUFFIXES))}"
    return out


def read_documents(path: Path, text_field: str = "text") -> list[Document]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        return [Document(str(path), _pdf_text(path))]
    raw = path.read_bytes()
    if not raw.strip():
        raise DocumentError(f"{path}: empty file")
    if b"\x00" in raw[:8192]:
        raise DocumentError(f"{path}: binary file (NUL bytes), not text; supported: {', '.join(sorted(SUFFIXES))}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DocumentError(f"{path}: not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                            "re-save it as UTF-8") from None
    if suffix == ".jsonl":
        return _jsonl(path, text, text_field)
    if suffix not in TEXT_SUFFIXES:
        raise DocumentError(f"{path}: unsupported file type {suffix!r}; supported: {', '.join(sorted(SUFFIXES))}")
    return [Document(str(path), text)]


def _jsonl(path: Path, text: str, field: str) -> list[Document]:
    docs = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DocumentError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        value = row.get(field) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value.strip():
            raise DocumentError(f"{path}:{i}: field {field!r} is missing or not a non-empty string")
        docs.append(Document(f"{path}:{i}", value))
    if not docs:
        raise DocumentError(f"{path}: no rows")
    return docs


def _pdf_text(path: Path) -> str:
    try:
        pypdf = require("pypdf", "rag", f"{path}: reading PDF")
    except MissingExtra as e:
        raise DocumentError(str(e)) from None
    PdfReader, PdfReadError = pypdf.PdfReader, pypdf.errors.PdfReadError  # noqa: N806 - the library's names
    with _captured("pypdf") as noise:  # pypdf logs/warns about malformed files; that goes into our message
        try:
            pages = [p.extract_text() or "" for p in PdfReader(str(path)).pages]
        except (PdfReadError, OSError, ValueError) as e:
            raise DocumentError(f"{path}: unreadable PDF ({e}){_said(noise)}") from None
        except Exception as e:  # noqa: BLE001 - a malformed PDF can fail anywhere in the parser; one file, one message
            raise DocumentError(f"{path}: unreadable PDF ({type(e).__name__}: {e}){_said(noise)}") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise DocumentError(f"{path}: the PDF has no extractable text (scanned images need OCR first){_said(noise)}")
    return text


def _said(noise: list[str]) -> str:
    return f"; pypdf said: {'; '.join(dict.fromkeys(noise))}" if noise else ""


@contextlib.contextmanager
def _captured(logger_name: str) -> Iterator[list[str]]:
    """Collect a library's log records and Python warnings instead of letting them reach stderr."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    log = logging.getLogger(logger_name)
    handler, propagate = Collect(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages += [str(w.message) for w in caught]
    finally:
        log.removeHandler(handler)
        log.propagate = propagate

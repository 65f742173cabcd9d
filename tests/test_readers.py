"""Readers: every format to Conversation, and every bad input to a DataError naming file, line and field."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from ftatlas.data.errors import DataError
from ftatlas.data.readers import FORMATS, detect_format, iter_rows, read_file
from ftatlas.data.records import Conversation, Message


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *rows: object) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


def raises(exc_path: Path, line: int | None, field: str | None, *needles: str, **kw: str) -> DataError:
    """Assert read_file(exc_path, **kw) raises a DataError with exactly this file, line and field."""
    with pytest.raises(DataError) as info:
        read_file(exc_path, **kw)
    err = info.value
    assert (err.file, err.line, err.field) == (str(exc_path), line, field)
    for needle in needles:
        assert needle in err.message
    return err


U, A, S = "user", "assistant", "system"


def oai(role: str, content: object) -> dict:
    return {"role": role, "content": content}


def sg(who: str, value: object) -> dict:
    return {"from": who, "value": value}


# --- formats -------------------------------------------------------------------------------------------


def test_alpaca_json_array(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.json",
        '[\n  {"instruction": "Add", "input": "2+2", "output": "4"},\n'
        '  {"instruction": "Hi", "input": "", "output": "Hello", "system": "Be nice", "extra": 1}\n]\n',
    )
    convs = read_file(path)
    assert convs == [
        Conversation([Message(U, "Add\n\n2+2"), Message(A, "4")], source=str(path), line=2),
        Conversation(
            [Message(S, "Be nice"), Message(U, "Hi"), Message(A, "Hello")], source=str(path), line=3
        ),
    ]
    assert detect_format(path) == "alpaca"


def test_alpaca_jsonl_skips_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl",
        '{"instruction": "Q1", "output": "A1"}\n\n   \n'
        '{"instruction": "Q2", "input": "ctx", "output": "A2"}\n',
    )
    convs = read_file(path, format="alpaca")
    assert [(c.line, c.messages) for c in convs] == [
        (1, [Message(U, "Q1"), Message(A, "A1")]),
        (4, [Message(U, "Q2\n\nctx"), Message(A, "A2")]),
    ]
    assert all(c.source == str(path) and not c.is_text for c in convs)


def test_sharegpt(tmp_path: Path) -> None:
    row = {
        "system": "sys",
        "conversations": [
            sg("human", "hi"),
            sg("gpt", "hello"),
            sg("user", "more"),
            sg("model", "sure"),
        ],
    }
    row2 = {"conversations": [sg("system", "s"), sg("human", "q"), sg("assistant", "a")]}
    path = jsonl(tmp_path / "s.jsonl", row, row2)
    assert detect_format(path) == "sharegpt"
    convs = read_file(path)
    assert convs[0].messages == [
        Message(S, "sys"),
        Message(U, "hi"),
        Message(A, "hello"),
        Message(U, "more"),
        Message(A, "sure"),
    ]
    assert convs[1].messages == [Message(S, "s"), Message(U, "q"), Message(A, "a")]
    assert [(c.source, c.line) for c in convs] == [(str(path), 1), (str(path), 2)]


def test_messages_with_system(tmp_path: Path) -> None:
    msgs = [
        oai("system", "S"),
        oai("user", "U1"),
        oai("assistant", "A1"),
        oai("user", "U2"),
        oai("assistant", "A2"),
    ]
    path = jsonl(tmp_path / "m.jsonl", {"messages": msgs, "id": 7})
    assert detect_format(path) == "messages"
    (conv,) = read_file(path)
    assert conv == Conversation(
        [Message(S, "S"), Message(U, "U1"), Message(A, "A1"), Message(U, "U2"), Message(A, "A2")],
        source=str(path),
        line=1,
    )


def test_messages_single_json_object(tmp_path: Path) -> None:
    text = '\n\n{"messages": [{"role": "user", "content": "q"},\n{"role": "assistant", "content": "a"}]}\n'
    path = write(tmp_path / "one.json", text)
    (conv,) = read_file(path)
    assert (conv.line, conv.messages) == (3, [Message(U, "q"), Message(A, "a")])


def test_text_jsonl(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", {"text": "first doc"}, {"text": "second\ndoc"})
    assert detect_format(path) == "text"
    convs = read_file(path)
    assert convs == [
        Conversation(text="first doc", source=str(path), line=1),
        Conversation(text="second\ndoc", source=str(path), line=2),
    ]
    assert all(c.is_text and c.messages == [] for c in convs)


def test_txt_paragraphs(tmp_path: Path) -> None:
    path = write(tmp_path / "p.txt", "\nPara one\nstill one\n\n\n  \nPara two\n\nPara three")
    assert detect_format(path) == "text"
    convs = read_file(path)
    assert [(c.text, c.line, c.source) for c in convs] == [
        ("Para one\nstill one", 2, str(path)),
        ("Para two", 7, str(path)),
        ("Para three", 9, str(path)),
    ]
    assert read_file(path, format="text") == convs


def test_json_array_element_lines(tmp_path: Path) -> None:
    text = (
        "[\n"  # 1
        '  {"text": "a"},\n'  # 2
        "  {\n"  # 3  element starts here, spans lines 3-4
        '    "text": "b"},\n'  # 4
        '  {"text": "c"}\n'  # 5
        "]\n"
    )
    path = write(tmp_path / "lines.json", text)
    assert [line for line, _ in iter_rows(path)] == [2, 3, 5]
    assert [c.line for c in read_file(path)] == [2, 3, 5]


def test_json_array_error_reports_element_line(tmp_path: Path) -> None:
    text = '[\n{"text": "a"},\n{"text": "b"},\n\n  {"text": 5},\n{"text": "d"}\n]'
    path = write(tmp_path / "bad.json", text)
    raises(path, 5, "text", "expected a string, got number")


def test_iter_rows_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", '{"a": 1}\n\n{"b": "\u2028"}\n')
    assert list(iter_rows(path)) == [(1, {"a": 1}), (3, {"b": "\u2028"})]


def test_auto_detection_uses_first_row_then_validates_all(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "mix.jsonl", {"text": "doc"}, {"messages": [oai("assistant", "x")]})
    raises(path, 2, "text", "missing field 'text'")


# --- errors --------------------------------------------------------------------------------------------


def test_malformed_json_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "ok"}\n\n{"text": "oops"\n{"text": "fine"}\n')
    raises(path, 3, None, "invalid JSON", "delimiter")


def test_malformed_json_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", '[\n {"text": "a"},\n {"text": }\n]\n')
    raises(path, 3, None, "invalid JSON", "Expecting value")


def test_missing_field_explicit_format(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", {"instruction": "q", "output": "a"}, {"instruction": "q2"})
    raises(path, 2, "output", "missing field 'output'", format="alpaca")
    raises(path, 1, "messages", "missing field 'messages'", format="messages")
    raises(path, 1, "conversations", "missing field 'conversations'", format="sharegpt")
    raises(path, 1, "text", "missing field 'text'", format="text")


def test_unknown_role_sharegpt(tmp_path: Path) -> None:
    conv = [sg("human", "a"), sg("gpt", "b"), sg("robot", "c")]
    path = jsonl(tmp_path / "s.jsonl", {"conversations": conv})
    err = raises(path, 1, "conversations[2].from", "unknown role 'robot'", "human, user, gpt, assistant")
    assert str(err) == (
        f"{path}:1: field 'conversations[2].from': unknown role 'robot'; "
        "allowed: human, user, gpt, assistant, model, system"
    )


def test_unknown_role_messages(tmp_path: Path) -> None:
    msgs = [oai("user", "q"), oai("tool", "{}"), oai("assistant", "a")]
    path = jsonl(tmp_path / "m.jsonl", {"messages": msgs})
    raises(path, 1, "messages[1].role", "unknown role 'tool'", "system, user, assistant")


def test_non_string_content(tmp_path: Path) -> None:
    msgs = [oai("user", ["part"]), oai("assistant", "a")]
    path = jsonl(tmp_path / "m.jsonl", {"messages": msgs})
    raises(path, 1, "messages[0].content", "expected a string, got array")
    conv = [sg("human", "q"), sg("gpt", None)]
    path = jsonl(tmp_path / "s.jsonl", {"conversations": conv})
    raises(path, 1, "conversations[1].value", "expected a string, got null")
    path = jsonl(tmp_path / "a.jsonl", {"instruction": "q", "input": 3, "output": "a"})
    raises(path, 1, "input", "expected a string, got number")


def test_wrong_container_types(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "m.jsonl", {"messages": []})
    raises(path, 1, "messages", "non-empty array")
    path = jsonl(tmp_path / "m2.jsonl", {"messages": ["hi"]})
    raises(path, 1, "messages[0]", "expected an object, got string")
    path = write(tmp_path / "r.jsonl", '{"text": "a"}\n[1, 2]\n')
    raises(path, 2, None, "not a JSON object")


def test_empty_file(tmp_path: Path) -> None:
    for name, text in [("e.jsonl", "\n\n"), ("e.json", ""), ("e2.json", "[\n]"), ("e.txt", "\n  \n")]:
        path = write(tmp_path / name, text)
        raises(path, None, None, "no rows")
    with pytest.raises(DataError, match="no rows"):
        detect_format(tmp_path / "e.jsonl")


def test_nonexistent_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    raises(path, None, None, "does not exist")
    with pytest.raises(DataError, match="does not exist"):
        detect_format(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "a,b\n")
    raises(path, None, None, "unsupported extension '.csv'", ".jsonl, .json, .txt")


def test_system_not_first(tmp_path: Path) -> None:
    msgs = [oai("user", "q"), oai("system", "s"), oai("assistant", "a")]
    path = jsonl(tmp_path / "m.jsonl", {"messages": msgs})
    raises(path, 1, "messages[1].role", "only allowed as the first message")
    conv = [sg("system", "dup"), sg("human", "q"), sg("gpt", "a")]
    path = jsonl(tmp_path / "s.jsonl", {"system": "top", "conversations": conv})
    raises(path, 1, "conversations[0].from", "only allowed as the first message")


def test_no_assistant_message(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "m.jsonl", {"messages": [oai("system", "s"), oai("user", "q")]})
    raises(path, 1, "messages", "no assistant message")
    path = jsonl(tmp_path / "s.jsonl", {"conversations": [sg("human", "q")]})
    raises(path, 1, "conversations", "no assistant message")


def test_empty_assistant_and_instruction(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "m.jsonl", {"messages": [oai("user", "q"), oai("assistant", " ")]})
    raises(path, 1, "messages[1].content", "empty assistant content")
    path = jsonl(tmp_path / "a.jsonl", {"instruction": "q", "output": ""})
    raises(path, 1, "output", "empty assistant content")
    path = jsonl(tmp_path / "a2.jsonl", {"instruction": "", "output": "x"})
    raises(path, 1, "instruction", "must not be empty")
    path = jsonl(tmp_path / "t.jsonl", {"text": ""})
    raises(path, 1, "text", "must not be empty")


def test_undetectable_shape(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "u.jsonl", {"prompt": "p", "completion": "c"})
    err = raises(path, 1, None, "[completion, prompt]", "alpaca", "sharegpt", "messages", "text")
    with pytest.raises(DataError) as info:
        detect_format(path)
    assert (info.value.line, info.value.message) == (1, err.message)


def test_format_argument_checks(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "t.jsonl", {"text": "x"})
    with pytest.raises(ValueError, match="unknown format 'chatml'") as info:
        read_file(path, format="chatml")
    assert not isinstance(info.value, DataError)
    assert all(f in str(info.value) for f in FORMATS)
    txt = write(tmp_path / "p.txt", "para\n")
    raises(txt, None, None, "format 'alpaca'", format="alpaca")


def test_data_error_str_and_pickle() -> None:
    err = DataError("data/train.jsonl", 17, "conversations[2].from", "unknown role 'robot'")
    assert str(err) == "data/train.jsonl:17: field 'conversations[2].from': unknown role 'robot'"
    assert str(DataError(Path("x.json"), None, None, "no rows")) == "x.json: no rows"
    assert str(DataError("x.json", 3, None, "bad")) == "x.json:3: bad"
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.file, back.line, back.field, back.message) == (err.file, 17, err.field, err.message)
    assert str(back) == str(err)

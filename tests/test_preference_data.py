"""Preference readers: every pair shape to PreferencePair (KTO rows to UnpairedExample), every bad row to a
DataError naming file, line and field; the built-in contacts pairs; preference splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftatlas.data.builtin import contact_pairs
from ftatlas.data.errors import DataError
from ftatlas.data.preference import (
    PreferencePair,
    UnpairedExample,
    read_preference_file,
    read_unpaired_file,
    to_unpaired,
)
from ftatlas.data.records import Message
from ftatlas.data.splits import load_splits
from ftatlas.recipe import DataSpec

U, A, S = "user", "assistant", "system"


def jsonl(path: Path, *rows: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def msg(role: str, content: object) -> dict:
    return {"role": role, "content": content}


def fails(path: Path, line: int | None, field: str | None, needle: str, read=read_preference_file) -> None:
    with pytest.raises(DataError) as info:
        read(path)
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), line, field), str(err)
    assert needle in err.message, err.message


def test_trl_conversational_standard_and_implicit_prompt(tmp_path: Path) -> None:
    conv = jsonl(tmp_path / "c.jsonl",
                 {"prompt": [msg(S, "Be brief"), msg(U, "2+2?")], "chosen": [msg(A, "4")], "rejected": [msg(A, "5")]},
                 {"chosen": [msg(U, "Hi"), msg(A, "Hello")], "rejected": [msg(U, "Hi"), msg(A, "Go away")]})
    assert read_preference_file(conv) == [
        PreferencePair([Message(S, "Be brief"), Message(U, "2+2?")], "4", "5", source=str(conv), line=1),
        PreferencePair([Message(U, "Hi")], "Hello", "Go away", source=str(conv), line=2),
    ]
    std = jsonl(tmp_path / "s.jsonl", {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."})
    [pair] = read_preference_file(std)
    assert pair.is_text and pair.prompt_text == "The sky is" and pair.prompt == []
    assert pair.to_json() == {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}


def test_alpaca_and_sharegpt_pairs(tmp_path: Path) -> None:
    alp = jsonl(tmp_path / "a.jsonl", {"instruction": "Add", "input": "2+2", "chosen": "4", "rejected": "22",
                                       "system": "Be exact"})
    assert read_preference_file(alp)[0].prompt == [Message(S, "Be exact"), Message(U, "Add\n\n2+2")]
    sg = jsonl(tmp_path / "g.jsonl", {"conversations": [{"from": "human", "value": "Hi"}],
                                      "chosen": {"from": "gpt", "value": "Hello"}, "rejected": "Bye"})
    [pair] = read_preference_file(sg)
    assert (pair.prompt, pair.chosen, pair.rejected) == ([Message(U, "Hi")], "Hello", "Bye")


def test_pairs_round_trip_through_to_json(tmp_path: Path) -> None:
    pairs = contact_pairs("eval", 5)
    path = jsonl(tmp_path / "rt.jsonl", *[p.to_json() for p in pairs])
    back = read_preference_file(path)
    assert [(p.prompt, p.chosen, p.rejected) for p in back] == [(p.prompt, p.chosen, p.rejected) for p in pairs]


def test_kto_rows_and_pairs_as_unpaired(tmp_path: Path) -> None:
    kto = jsonl(tmp_path / "k.jsonl", {"prompt": [msg(U, "Hi")], "completion": [msg(A, "Hello")], "label": True},
                {"prompt": [msg(U, "Hi")], "completion": [msg(A, "Go away")], "label": False})
    rows = read_unpaired_file(kto)
    assert [(r.completion, r.label) for r in rows] == [("Hello", True), ("Go away", False)]
    pairs = jsonl(tmp_path / "p.jsonl", {"prompt": [msg(U, "Hi")], "chosen": [msg(A, "a")], "rejected": [msg(A, "b")]})
    assert read_unpaired_file(pairs) == [UnpairedExample([Message(U, "Hi")], "a", True, None, str(pairs), 1),
                                         UnpairedExample([Message(U, "Hi")], "b", False, None, str(pairs), 1)]


@pytest.mark.parametrize(("row", "line", "field", "needle"), [
    ({"prompt": [msg(U, "q")], "chosen": [msg(A, "a")]}, 2, "rejected", "missing field 'rejected'"),
    ({"prompt": [msg(U, "q")], "chosen": [msg(A, "a")], "rejected": [msg(A, "a")]}, 2, "rejected", "identical"),
    ({"prompt": [msg(U, "q")], "chosen": [msg(A, "  ")], "rejected": [msg(A, "b")]}, 2, "chosen", "must not be empty"),
    ({"prompt": [msg(U, "q")], "chosen": 3, "rejected": [msg(A, "b")]}, 2, "chosen", "got number"),
    ({"prompt": [msg(U, "q"), msg(A, "x")], "chosen": [msg(A, "a")], "rejected": [msg(A, "b")]},
     2, "prompt[1].role", "must end with a user message"),
    ({"prompt": [msg("bot", "q")], "chosen": [msg(A, "a")], "rejected": [msg(A, "b")]}, 2, "prompt[0].role",
     "unknown role"),
    ({"prompt": [msg(U, "q")], "chosen": [msg(A, "a"), msg(A, "b")], "rejected": [msg(A, "b")]}, 2, "chosen",
     "exactly one assistant message"),
    ({"prompt": [msg(U, "q")], "chosen": "a", "rejected": [msg(A, "b")]}, 2, "prompt", "mixes"),
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, 2, "prompt", "one file uses one form"),
    ({"chosen": [msg(U, "q"), msg(A, "a")], "rejected": [msg(U, "other"), msg(A, "b")]}, 2, "rejected",
     "share every message"),
])
def test_bad_pair_rows_name_file_line_field(tmp_path: Path, row: dict, line: int, field: str, needle: str) -> None:
    good = {"prompt": [msg(U, "ok")], "chosen": [msg(A, "yes")], "rejected": [msg(A, "no")]}
    fails(jsonl(tmp_path / "bad.jsonl", good, row), line, field, needle)


def test_bad_shapes_and_kinds(tmp_path: Path) -> None:
    fails(jsonl(tmp_path / "x.jsonl", {"question": "q"}), 1, None, "cannot detect a preference format")
    kto = jsonl(tmp_path / "k.jsonl", {"prompt": "q", "completion": "a", "label": True})
    fails(kto, 1, None, "needs paired preference data")
    fails(jsonl(tmp_path / "l.jsonl", {"prompt": "q", "completion": "a", "label": 1}), 1, "label",
          "expected true or false", read=read_unpaired_file)
    sg = jsonl(tmp_path / "g.jsonl", {"conversations": [{"from": "human", "value": "Hi"}],
                                      "chosen": {"from": "human", "value": "x"}, "rejected": "y"})
    fails(sg, 1, "chosen.from", "expected an assistant turn")
    (tmp_path / "t.txt").write_text("plain\n")
    fails(tmp_path / "t.txt", None, None, "not a .txt file")
    (tmp_path / "e.jsonl").write_text("\n")
    fails(tmp_path / "e.jsonl", None, None, "no rows")
    (tmp_path / "j.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{oops\n')
    fails(tmp_path / "j.jsonl", 2, None, "invalid JSON")


def test_builtin_contact_pairs_deterministic_and_plausibly_wrong() -> None:
    pairs = contact_pairs("train")
    assert len(pairs) == 400 and len(contact_pairs("eval")) == 100
    assert [p.rejected for p in pairs] == [p.rejected for p in contact_pairs("train")]
    for p in pairs:
        good, bad = json.loads(p.chosen), json.loads(p.rejected)
        assert good != bad and set(bad) <= set(good)
        assert sum(bad.get(k) != v for k, v in good.items()) == 1  # exactly one field off or missing
    assert {p.prompt[-1].content for p in pairs}.isdisjoint({p.prompt[-1].content for p in contact_pairs("eval")})


def test_preference_splits_from_builtin_and_file(tmp_path: Path) -> None:
    s = load_splits(DataSpec(builtin="contacts"), "preference")
    assert isinstance(s.train[0], PreferencePair) and len(s.eval) == 100
    u = load_splits(DataSpec(builtin="contacts"), "unpaired")
    assert len(u.train) == 800 and {r.label for r in u.train} == {True, False}
    path = jsonl(tmp_path / "p.jsonl", *[p.to_json() for p in contact_pairs("train", 20)])
    s = load_splits(DataSpec(train=str(path), eval_split=0.25, seed=1), "preference")
    assert (len(s.train), len(s.eval)) == (15, 5)
    assert not {p.line for p in s.train} & {p.line for p in s.eval}
    assert to_unpaired(s.eval)[0].label is True
    with pytest.raises(DataError, match="plain-text objectives"):
        load_splits(DataSpec(builtin="contacts"), "text")

"""Any datasets source as data.train/data.eval (local parquet/csv, folders, column mapping, streaming), errors
naming source:split:index and field, and the tokenized-rows cache."""

from __future__ import annotations

import datasets
import pytest

from ftatlas.data.errors import DataError
from ftatlas.data.splits import load_splits
from ftatlas.data.templating import encode_all
from ftatlas.data.token_cache import encode_cached
from ftatlas.recipe import DataSpec, RecipeError, build_recipe

QA = [{"question": f"What is {i} plus one?", "answer": str(i + 1), "note": None} for i in range(20)]


@pytest.fixture
def parquet(tmp_path):
    path = tmp_path / "qa.parquet"
    datasets.Dataset.from_list(QA).to_parquet(str(path))
    return path


def test_parquet_with_column_mapping_reads_alpaca_rows(parquet):
    spec = DataSpec(train={"path": str(parquet), "columns": {"instruction": "question", "output": "answer"}},
                    eval_split=0.0)
    splits = load_splits(spec)
    assert len(splits.train) == 20
    first = splits.train[0]
    assert [m.content for m in first.messages] == ["What is 0 plus one?", "1"]  # null 'note' column dropped
    assert (first.source, first.line) == (f"{parquet}:train", 0)
    assert splits.note.startswith(f"{parquet}:train: 20 train")


def test_csv_file_and_eval_source_and_split_slices(tmp_path):
    path = tmp_path / "chat.csv"
    datasets.Dataset.from_list([{"instruction": f"say {i}", "output": f"{i}"} for i in range(12)]).to_csv(str(path))
    spec = DataSpec(train=str(path), eval={"path": str(path), "split": "train[:3]"})
    splits = load_splits(spec)
    assert (len(splits.train), len(splits.eval)) == (12, 3)
    assert splits.eval[2].messages[-1].content == "2"


def test_parquet_folder_streamed_reads_only_what_is_used(tmp_path, parquet):
    folder = tmp_path / "shards"
    folder.mkdir()
    for i in range(2):
        datasets.Dataset.from_list(QA[i * 10:(i + 1) * 10]).to_parquet(str(folder / f"part-{i}.parquet"))
    spec = DataSpec(train={"path": str(folder), "streaming": True, "columns": {"instruction": "question",
                                                                             "output": "answer"}},
                    max_train=4, eval_split=0.0)
    splits = load_splits(spec)
    assert len(splits.train.head(10)) == 4 and splits.train[3].line == 3  # max_train rows, read lazily
    assert [r.line for r in splits.train] == [0, 1, 2, 3]  # every pass reads the source again
    with pytest.raises(TypeError, match="streamed"):
        len(splits.train)  # a stream's length is unknown: never a silent full read


def test_streamed_split_holds_out_its_first_rows_or_says_what_to_set(parquet):
    source = {"path": str(parquet), "streaming": True, "columns": {"instruction": "question", "output": "answer"}}
    splits = load_splits(DataSpec(train=source, max_train=8, eval_split=0.2))
    assert [r.line for r in splits.eval] == [0, 1] and [r.line for r in splits.train] == list(range(2, 10))
    assert "streamed, the next 8 rows read as training goes; its first 2 rows held out" in splits.note
    with pytest.raises(DataError, match=r"qa.parquet:train: field 'data.eval_split': a streamed source .* "
                                        r"set data.eval"):
        load_splits(DataSpec(train=source))  # eval_split 0.1 of an unknown length
    with pytest.raises(DataError, match=r"field 'data.max_train': streaming: true with preference rows reads them"):
        load_splits(DataSpec(train=source), "preference")  # only sft trains from the stream


def test_bad_row_names_source_split_index_and_field(tmp_path):
    rows = [{"instruction": "a", "output": "b"}] * 3 + [{"instruction": "", "output": "d"}]
    path = tmp_path / "bad.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    with pytest.raises(DataError, match=rf"^{path}:train:3: field 'instruction': must not be empty$"):
        load_splits(DataSpec(train=str(path)))


def test_missing_source_and_unknown_column_are_named(tmp_path, parquet):
    with pytest.raises(DataError, match=r"nope.parquet: field 'data.train': does not exist"):
        load_splits(DataSpec(train=str(tmp_path / "nope.parquet")))
    spec = DataSpec(train={"path": str(parquet), "columns": {"instruction": "prompt"}})
    with pytest.raises(DataError, match=r"field 'data.train.columns.instruction': no column 'prompt'; columns: "
                                        r"question, answer, note"):
        load_splits(spec)
    spec = DataSpec(train={"path": str(parquet), "split": "validation"})
    with pytest.raises(DataError, match=r"qa.parquet:validation: field 'data.train': .*validation"):
        load_splits(spec)
    with pytest.raises(RecipeError, match=r"data.train.*streamed"):
        build_recipe({"data": {"train": {"path": str(parquet), "streamed": True}}})


def test_tokenized_rows_are_cached_and_equal_to_a_fresh_encoding(tokenizer, parquet, tmp_path):
    spec = DataSpec(train={"path": str(parquet), "columns": {"instruction": "question", "output": "answer"}})
    rows = load_splits(spec).train
    rows[0].messages[-1] = type(rows[0].messages[-1])("assistant", "x " * 200)  # truncated: its loss is cut off
    fresh, fresh_stats = encode_all(tokenizer, rows, 24, "assistant")
    cold, cold_stats, hit = encode_cached(tokenizer, rows, 24, "assistant", tmp_path / "cache")
    warm, warm_stats, warm_hit = encode_cached(tokenizer, rows, 24, "assistant", tmp_path / "cache")
    assert (hit, warm_hit) == (False, True)
    assert cold == fresh and warm == fresh
    assert cold_stats == fresh_stats == warm_stats and fresh_stats.truncated >= 1
    _, _, other = encode_cached(tokenizer, rows, 32, "assistant", tmp_path / "cache")
    assert other is False  # another max_length is another cache entry

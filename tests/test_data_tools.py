"""ftatlas data dedup / decontaminate / filter / mix: library behaviour, reports, and bad input via the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ftatlas.cli import app
from ftatlas.data.errors import DataError
from ftatlas.data.filters import FilterSpec, filter_rows
from ftatlas.data.table import load_table
from ftatlas.data.tools import decontaminate_file, dedup_file, filter_file, mix_file
from tests.conftest import write_jsonl

runner = CliRunner()
LONG = ("the quick brown fox jumps over the lazy dog while the farmer watches from the old red barn "
        "near the river bend at dawn")


def alpaca(instruction: str, output: str, **extra) -> dict:
    return {"instruction": instruction, "output": output, **extra}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def dupes(tmp_path) -> Path:
    return write_jsonl(tmp_path / "d.jsonl", [
        alpaca("Describe the scene.", LONG, score=1),                       # 1: kept (first)
        alpaca("DESCRIBE the scene!", LONG + ".", score=3),                  # 2: exact after normalising
        alpaca("Describe the scene.", LONG.replace("lazy", "sleepy"), score=2),  # 3: near (one word)
        alpaca("What is 2+2?", "4"),                                         # 4: unique
        alpaca("Name a colour.", "Blue is a colour that many people like best of all."),  # 5: unique
    ])


def test_dedup_removes_exact_and_near_duplicates_and_reports_each(dupes, tmp_path):
    rep = dedup_file(dupes, out=tmp_path / "o.jsonl")
    kept = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in kept] == ["Describe the scene.", "What is 2+2?", "Name a colour."]
    assert kept[0]["score"] == 1  # the original row object is written back unchanged
    assert (rep["rows_in"], rep["rows_out"], rep["exact_removed"], rep["near_removed"]) == (5, 3, 1, 1)
    [cluster] = rep["clusters"]
    assert cluster["kept"].endswith("d.jsonl:1")
    removed = {r["row"].rsplit(":", 1)[1]: r for r in cluster["removed"]}
    assert removed["2"]["match"] == "exact" and removed["3"]["match"] == "near"
    assert 0.7 <= removed["3"]["similarity"] < 1.0
    on_disk = json.loads((tmp_path / "o.report.json").read_text())
    assert on_disk["removed"] == 2 and on_disk["peak_rss_mib"] > 0


def test_dedup_keep_policies_and_exact_only(dupes, tmp_path):
    by_score = dedup_file(dupes, out=tmp_path / "s.jsonl", keep="score")
    assert by_score["clusters"][0]["kept"].endswith(":2")
    longest = dedup_file(dupes, out=tmp_path / "l.jsonl", keep="longest")
    assert longest["clusters"][0]["kept"].endswith(":3")  # "sleepy" is longer than "lazy"
    exact = dedup_file(dupes, out=tmp_path / "e.jsonl", near=False)
    assert (exact["exact_removed"], exact["near_removed"]) == (1, 0)


def test_dedup_threshold_is_the_true_jaccard(dupes, tmp_path):
    strict = dedup_file(dupes, out=tmp_path / "o.jsonl", threshold=0.95)
    assert strict["near_removed"] == 0 and strict["exact_removed"] == 1


def test_dedup_bad_inputs_name_file_line_field(dupes, tmp_path):
    noscore = write_jsonl(tmp_path / "n.jsonl", [alpaca("a b c", "d", score=1), alpaca("a b c", "d", score="hi")])
    with pytest.raises(DataError, match=r"n\.jsonl:2: field 'score': .*not a number"):
        dedup_file(noscore, out=tmp_path / "o.jsonl", keep="score")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": 3}\n')
    res = invoke("data", "dedup", bad)
    assert res.exit_code == 2 and "bad.jsonl:2" in res.output and "'output'" in res.output
    res = invoke("data", "dedup", tmp_path / "missing.jsonl")
    assert res.exit_code == 2 and "missing.jsonl" in res.output and "does not exist" in res.output
    res = invoke("data", "dedup", dupes, "--threshold", "1.5")
    assert res.exit_code == 2 and "threshold" in res.output
    res = invoke("data", "dedup", dupes, "--out", dupes)
    assert res.exit_code == 2 and "overwrite the input" in res.output


def test_dedup_reads_txt_and_preference_files(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text(f"{LONG}\n\nsomething else entirely here\n\n{LONG.upper()}\n")
    rep = dedup_file(txt, out=tmp_path / "t.out.txt")
    assert rep["rows_out"] == 2 and (tmp_path / "t.out.txt").read_text().count("\n\n") == 1
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Say hi", "chosen": "hi there", "rejected": "no"}] * 2)
    assert dedup_file(pairs, out=tmp_path / "p.out.jsonl")["rows_out"] == 1


def test_decontaminate_finds_leaked_eval_rows_and_spans(tmp_path):
    ev = write_jsonl(tmp_path / "eval.jsonl", [alpaca("Describe the scene.", LONG),
                                               alpaca("What is 17 times 3?", "51")])
    train = write_jsonl(tmp_path / "train.jsonl", [
        alpaca("Tell a story.", "Once upon a time " + LONG + " and then it rained."),  # 13-gram leak
        alpaca("Quiz", "what is 17 times 3? 51"),                                   # short eval row, verbatim
        alpaca("What is 18 times 3?", "54"),                                        # close but not a leak
        alpaca("Name a colour.", "Blue."),
    ])
    rep = decontaminate_file(train, [str(ev)], out=tmp_path / "clean.jsonl")
    assert rep["rows_out"] == 2
    leaks = {c["row"].rsplit(":", 1)[1]: c for c in rep["contaminated"]}
    assert set(leaks) == {"1", "2"}
    assert leaks["1"]["eval_rows"] == [f"{ev}:1"] and LONG.split(" the farmer")[0] in leaks["1"]["spans"][0]
    assert leaks["2"]["spans"] == ["what is 17 times 3 51"]


def test_decontaminate_against_builtin_and_cli_errors(tmp_path):
    from ftatlas.data.splits import load_builtin

    held = load_builtin("contacts", "eval")
    leaked = [r.to_json() for r in held[:2]] + [{"messages": [{"role": "user", "content": "unrelated question"},
                                                             {"role": "assistant", "content": "fine"}]}]
    train = write_jsonl(tmp_path / "t.jsonl", leaked)
    res = invoke("data", "decontaminate", train, "--against", "builtin:contacts")
    assert res.exit_code == 0, res.output
    assert "3 rows -> 1 kept, 2 removed" in res.output
    res = invoke("data", "decontaminate", train, "--against", tmp_path / "nope.jsonl")
    assert res.exit_code == 2 and "nope.jsonl" in res.output
    res = invoke("data", "decontaminate", train, "--against", "builtin:nope")
    assert res.exit_code == 2 and "unknown built-in" in res.output


def test_filter_rules_report_reasons_and_distributions(tmp_path):
    f = write_jsonl(tmp_path / "f.jsonl", [
        alpaca("Describe the scene.", LONG),
        alpaca("Write a poem.", "I'm sorry, but I can't help with that request."),
        alpaca("Repeat", "go go go go go go go go go go go go go go"),
        alpaca("Translate", "Привет, как дела у тебя сегодня вечером?"),
        alpaca("Hi", "Yo"),
    ])
    rep = filter_file(f, FilterSpec({"words": (3, None), "refusal": (None, 0.0), "repetition": (None, 0.5),
                                     "script_share": (0.8, None)}), out=tmp_path / "o.jsonl")
    assert rep["rows_out"] == 1
    reasons = {r["row"].rsplit(":", 1)[1]: r["reasons"] for r in rep["removed_rows"]}
    assert reasons["2"] == ["refusal 1 > 0"]
    assert reasons["3"][0].startswith("repetition")
    assert reasons["4"][0].startswith("script_share")
    assert any(x.startswith("words 2 < 3") for x in reasons["5"])
    assert set(rep["distributions"]) == {"words", "refusal", "repetition", "script_share"}
    assert rep["removed_by"]["refusal"] == 1


def test_filter_perplexity_uses_the_model(tmp_path, tiny_model_dir):
    f = write_jsonl(tmp_path / "f.jsonl", [alpaca("Describe the scene.", LONG), alpaca("Hi", "there")])
    rows = load_table(f)
    res = filter_rows(rows, FilterSpec({"perplexity": (None, 1e9)}, model=str(tiny_model_dir)))
    ppl = res.values["perplexity"]
    assert len(ppl) == 2 and all(p > 1.0 for p in ppl) and res.kept == [0, 1]
    tight = filter_rows(rows, FilterSpec({"perplexity": (None, min(ppl))}, model=str(tiny_model_dir)))
    assert len(tight.kept) == 1


def test_filter_cli_needs_a_filter_and_rejects_unknown_measures(tmp_path):
    f = write_jsonl(tmp_path / "f.jsonl", [alpaca("Hi", "there")])
    res = invoke("data", "filter", f)
    assert res.exit_code == 2 and "no filter given" in res.output
    with pytest.raises(ValueError, match="unknown filter measure"):
        FilterSpec({"vibes": (0, 1)})
    res = invoke("data", "filter", f, "--max-perplexity", "10")
    assert res.exit_code == 2 and "--model" in res.output


def test_mix_draws_weighted_seeded_counts(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [alpaca(f"a{i}", "x") for i in range(40)])
    write_jsonl(tmp_path / "b.jsonl", [alpaca(f"b{i}", "y") for i in range(10)])
    spec = tmp_path / "mix.yaml"
    spec.write_text(yaml.safe_dump({"seed": 3, "sources": [{"path": "a.jsonl", "weight": 3},
                                                           {"path": "b.jsonl", "weight": 1}]}))
    rep = mix_file(spec, out=tmp_path / "m.jsonl")
    assert rep["rows"] == 40  # b (10 rows at 1/4) limits the total
    assert [(s["taken"], s["left_out"]) for s in rep["sources"]] == [(30, 10), (10, 0)]
    first = (tmp_path / "m.jsonl").read_text()
    assert mix_file(spec, out=tmp_path / "m2.jsonl")["rows"] == 40 and (tmp_path / "m2.jsonl").read_text() == first
    spec.write_text(yaml.safe_dump({"seed": 4, "sources": [{"path": "a.jsonl", "weight": 3},
                                                           {"path": "b.jsonl", "weight": 1}]}))
    mix_file(spec, out=tmp_path / "m3.jsonl")
    assert (tmp_path / "m3.jsonl").read_text() != first


def test_mix_bad_specs_name_the_field(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [alpaca("a", "x")])
    spec = tmp_path / "mix.yaml"
    spec.write_text(yaml.safe_dump({"sources": [{"path": "a.jsonl", "wieght": 1}]}))
    res = invoke("data", "mix", spec, "--out", tmp_path / "m.jsonl")
    assert res.exit_code == 2 and "sources.0.wieght" in res.output
    spec.write_text(yaml.safe_dump({"total": 5, "sources": [{"path": "a.jsonl", "weight": 1}]}))
    res = invoke("data", "mix", spec, "--out", tmp_path / "m.jsonl")
    assert res.exit_code == 2 and "sources.0" in res.output and "replace: true" in res.output
    spec.write_text(yaml.safe_dump({"total": 5, "replace": True, "sources": [{"path": "a.jsonl", "weight": 1}]}))
    assert mix_file(spec, out=tmp_path / "m.jsonl")["sources"][0]["repeated"] == 4


def test_a_recipe_trains_on_a_mixture_spec(tmp_path):
    from ftatlas.data.splits import load_splits
    from ftatlas.recipe import DataSpec

    write_jsonl(tmp_path / "a.jsonl", [{"messages": [{"role": "user", "content": f"a{i}"},
                                                    {"role": "assistant", "content": "x"}]} for i in range(20)])
    write_jsonl(tmp_path / "b.jsonl", [alpaca(f"b{i}", "y") for i in range(5)])
    spec = tmp_path / "mix.yaml"
    spec.write_text(yaml.safe_dump({"sources": [{"path": "a.jsonl", "count": 8}, {"path": "b.jsonl", "count": 4}]}))
    splits = load_splits(DataSpec(train=str(spec), eval_split=0.25))
    assert len(splits.train) + len(splits.eval) == 12
    users = [r.messages[0].content for r in splits.train + splits.eval]
    assert sum(u.startswith("b") for u in users) == 4
    pairs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"}
                                               for i in range(3)])
    spec.write_text(yaml.safe_dump({"sources": [{"path": pairs.name, "weight": 1}]}))
    assert len(load_splits(DataSpec(train=str(spec), eval_split=0.0), "unpaired").train) == 6


def test_shipped_mixture_spec_mixes(tmp_path):
    rep = mix_file(Path("examples/data/mix.yaml"), out=tmp_path / "m.jsonl")
    assert [s["taken"] for s in rep["sources"]] == [73, 24] and rep["rows"] == 97


def _lm_eval_task(tmp_path: Path, dataset: dict) -> Path:
    """A folder holding one lm-eval task YAML (the way users define a local task)."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "atlas_capitals.yaml").write_text(yaml.safe_dump({
        "task": "atlas_capitals", **dataset, "test_split": "test", "output_type": "generate_until",
        "doc_to_text": "Question: What is the capital city of the country called {{country}} in the old atlas?",
        "doc_to_target": "{{capital}}", "metric_list": [{"metric": "exact_match", "higher_is_better": True,
                                                          "aggregation": "mean"}]}))
    return tasks


def test_decontaminate_against_a_local_lm_eval_task(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval (the ftatlas[harness] extra) is not installed")
    docs = write_jsonl(tmp_path / "capitals.jsonl", [{"country": "Veloria", "capital": "Ostmere"},
                                                     {"country": "Brunland", "capital": "Quillan"}])
    tasks = _lm_eval_task(tmp_path, {"dataset_path": "json",
                                     "dataset_kwargs": {"data_files": {"test": str(docs)}}})
    train = write_jsonl(tmp_path / "t.jsonl", [
        alpaca("What is the capital city of the country called Veloria in the old atlas?", "Ostmere."),  # leak
        alpaca("What is the capital city of the country called Sarnia in the old atlas?", "Lowmarch."),  # clean
        alpaca("Name a colour.", "Blue."),
    ])
    rep = decontaminate_file(train, [f"lm-eval:atlas_capitals@{tasks}"], out=tmp_path / "c.jsonl")
    assert [c["row"].rsplit(":", 1)[1] for c in rep["contaminated"]] == ["1"]
    assert rep["contaminated"][0]["eval_rows"] == ["lm-eval:atlas_capitals:1"]
    assert "country called veloria in the old atlas" in rep["contaminated"][0]["spans"][0]


def test_lm_eval_task_errors_name_the_task_and_say_offline(tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval (the ftatlas[harness] extra) is not installed")
    tasks = _lm_eval_task(tmp_path, {"dataset_path": "ftatlas-test/not-in-any-cache"})  # a hub dataset, not cached
    train = write_jsonl(tmp_path / "t.jsonl", [alpaca("Name a colour.", "Blue.")])
    res = invoke("data", "decontaminate", train, "--against", f"lm-eval:atlas_capitals@{tasks}")
    assert res.exit_code == 2, res.output
    assert "lm-eval:atlas_capitals@" in res.output and "not available offline" in res.output
    res = invoke("data", "decontaminate", train, "--against", f"lm-eval:atlas_capitols@{tasks}")
    said = " ".join(res.output.split())  # the error wraps at the console width
    assert res.exit_code == 2 and "unknown lm-eval task 'atlas_capitols'" in said
    assert "did you mean atlas_capitals" in said


def test_decontaminate_against_a_run_dir_reads_its_held_out_split(tmp_path):
    held = [alpaca(f"Which shelf holds ledger {i} of the harbour master in the old city archive?", f"Shelf {i}.")
            for i in range(4)]
    ev = write_jsonl(tmp_path / "eval.jsonl", held)
    tr = write_jsonl(tmp_path / "train.jsonl", [alpaca("Name a colour.", "Blue.")])
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text(yaml.safe_dump({"model": {"name": "smollm2-135m"}, "method": {"name": "lora"},
                                                     "data": {"train": str(tr), "eval": str(ev)}}))
    train = write_jsonl(tmp_path / "t.jsonl", [held[2], alpaca("Name a colour.", "Red.")])
    rep = decontaminate_file(train, [str(run)], out=tmp_path / "c.jsonl")
    assert rep["rows_out"] == 1 and rep["contaminated"][0]["eval_rows"] == [f"{ev}:3"]


def test_decontaminate_reports_train_boilerplate_and_keeps_the_share_rule(tmp_path):
    system = "You are the assistant of the city archive and you answer every question in one short sentence."
    ev = write_jsonl(tmp_path / "eval.jsonl", [alpaca(f"{system} Where is the ledger?", "On shelf nine, next to "
                                                      "the maps of the northern quarter and the harbour logs.")])
    rows = [alpaca(f"{system} Where is box {i}?", f"Shelf {i}.") for i in range(12)]
    rows.append(alpaca("Quote", "It sits on shelf nine, next to the maps of the northern quarter and the harbour."))
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    res = invoke("data", "decontaminate", train, "--against", ev, "--out", tmp_path / "c.jsonl")
    assert res.exit_code == 0, res.output
    assert "13 rows -> 12 kept, 1 removed" in res.output and "t.jsonl:13 <- " in res.output
    rep = json.loads((tmp_path / "c.report.json").read_text())
    assert rep["params"] == {"ngram": 13, "min_words": 3, "coverage": 0.0, "boilerplate_rows": 10}
    assert rep["train_boilerplate_ignored"] > 0 and "city archive" in " ".join(rep["train_boilerplate_examples"])
    assert f"boilerplate ignored: {rep['train_boilerplate_ignored']} eval n-grams common to > 10 training rows" \
        in res.output
    loose = decontaminate_file(train, [str(ev)], out=tmp_path / "l.jsonl", boilerplate_rows=100)
    assert loose["removed"] == 13 and loose["train_boilerplate_ignored"] == 0
    share = decontaminate_file(train, [str(ev)], out=tmp_path / "s.jsonl", coverage=0.5)
    assert share["removed"] == 0  # the quote holds too small a share of the eval row's 13-grams
    res = invoke("data", "decontaminate", train, "--against", ev, "--boilerplate-rows", "0")
    assert res.exit_code == 2 and "--boilerplate-rows must be >= 1" in res.output


class PrefersLonger:
    """A judge that prefers the longer answer, and has no verdict when an answer says 'mumble'."""

    name = "judge"

    def __init__(self) -> None:
        self.chats: list = []

    def complete(self, chats, decode):
        self.chats += chats
        out = []
        for chat in chats:
            text = chat[-1]["content"]
            a = text.split("[Answer A]\n")[1].split("\n\n[Answer B]")[0]
            b = text.split("[Answer B]\n")[1].split("\n\nWhich answer")[0]
            out.append("hmm" if "mumble" in a + b else "Verdict: tie" if len(a) == len(b)
                       else f"Verdict: {'A' if len(a) > len(b) else 'B'}")
        return out


def test_filter_pairwise_judge_on_pairs_and_against_a_file(tmp_path):
    pairs = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "q1", "chosen": "a long and careful answer", "rejected": "short"},      # judge agrees: 1
        {"prompt": "q2", "chosen": "meh", "rejected": "the better, longer answer"},       # judge disagrees: 0
        {"prompt": "q3", "chosen": "same", "rejected": "also"},                           # tie: 0.5
        {"prompt": "q4", "chosen": "mumble", "rejected": "x"},                            # no verdict: NaN
    ])
    judge = PrefersLonger()
    res = filter_rows(load_table(pairs), FilterSpec({"judge_pairwise": (0.5, None)}, judge_teacher=judge))
    assert res.values["judge_pairwise"][:3] == [1.0, 0.0, 0.5] and res.kept == [0, 2]
    assert len(judge.chats) == 8  # both orders
    assert "[Answer A]\nshort" in judge.chats[4][-1]["content"]  # the swapped order puts the opponent first
    assert [r["reasons"] for r in res.removed] == [["judge_pairwise 0 < 0.5"], ["judge_pairwise nan < 0.5"]]
    rows = write_jsonl(tmp_path / "r.jsonl", [alpaca("q1", "a long detailed answer"), alpaca("q2", "ok")])
    base = write_jsonl(tmp_path / "base.jsonl", [alpaca("q2", "a base model's longer answer"), alpaca("q1", "no")])
    res = filter_rows(load_table(rows), FilterSpec({"judge_pairwise": (1, None)}, judge_teacher=PrefersLonger(),
                                                   judge_against=str(base)))
    assert res.kept == [0]
    with pytest.raises(DataError, match=r"r\.jsonl:1: .*--judge-against FILE"):
        filter_rows(load_table(rows), FilterSpec({"judge_pairwise": (1, None)}, judge_teacher=PrefersLonger()))
    other = write_jsonl(tmp_path / "o.jsonl", [alpaca("q9", "x")])
    res = invoke("data", "filter", rows, "--min-judge-pairwise", "1", "--judge", "http://127.0.0.1:9",
                 "--judge-against", other)
    assert res.exit_code == 2 and "r.jsonl:1: field 'prompt': no row with this prompt in --judge-against" in res.output

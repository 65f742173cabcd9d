"""``ftatlas data dedup|decontaminate|filter|mix``: each writes the kept rows and a JSON report of what went."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm.auto import tqdm

from ftatlas.cli.common import USER_ERRORS, fail, group, out

data_app = group("data", "Inspect, validate and prepare data files.")

Out = Annotated[Path | None, typer.Option("--out", help="output file (default: FILE.<tool>.jsonl beside it)")]
Report = Annotated[Path | None, typer.Option("--report", help="JSON report (default: OUT.report.json)")]
Format = Annotated[str, typer.Option(help="auto, alpaca, sharegpt, messages, text, trl, kto")]


@contextmanager
def _bar(desc: str, total: int | None = None) -> Any:
    with tqdm(total=total, desc=desc, unit="row", disable=not sys.stderr.isatty()) as bar:
        yield bar.update


def _summary(rep: dict[str, Any], what: str) -> None:
    out.print(f"{rep['input']}: {rep['rows_in']} rows -> {rep['rows_out']} kept, {rep['removed']} removed ({what}) "
              f"in {rep['seconds']} s, peak RSS {rep['peak_rss_mib']} MiB", highlight=False)
    out.print(f"wrote {rep['output']} and {rep['report']}", highlight=False)


@data_app.command("dedup")
def data_dedup(
    file: Annotated[str, typer.Argument(help="data file (.jsonl, .json, .txt)")],
    threshold: Annotated[float, typer.Option(help="near-duplicate Jaccard similarity of word n-grams")] = 0.7,
    ngram: Annotated[int, typer.Option(help="words per shingle")] = 3,
    num_perm: Annotated[int, typer.Option(help="MinHash permutations")] = 128,
    near: Annotated[bool, typer.Option("--near/--exact-only", help="also remove near-duplicates")] = True,
    keep: Annotated[str, typer.Option(help="row kept per cluster: first, longest or score")] = "first",
    score_field: Annotated[str, typer.Option(help="numeric row field read by --keep score")] = "score",
    output: Out = None, report: Report = None, format: Format = "auto",
) -> None:
    """Remove exact (normalised text) and near (MinHash LSH) duplicates; the report lists every cluster."""
    from ftatlas.data.tools import dedup_file

    try:
        with _bar("dedup") as progress:
            rep = dedup_file(file, out=output, report=report, format=format, threshold=threshold, ngram=ngram,
                             num_perm=num_perm, near=near, keep=keep, score_field=score_field, progress=progress)
    except USER_ERRORS as e:
        fail(e)
    _summary(rep, f"{rep['exact_removed']} exact, {rep['near_removed']} near, {len(rep['clusters'])} clusters")
    for c in rep["clusters"][:3]:
        out.print(f"  {c['kind']}: kept {c['kept']}, removed "
                  + ", ".join(f"{r['row']} (similarity {r['similarity']})" for r in c["removed"][:3]), highlight=False)


@data_app.command("decontaminate")
def data_decontaminate(
    file: Annotated[str, typer.Argument(help="training data file")],
    against: Annotated[list[str], typer.Option(
        "--against", help="eval data: a file, builtin:NAME (its eval split), lm-eval:TASK (the task's documents "
                          "in the local cache) or a run dir (its held-out rows); repeatable")],
    ngram: Annotated[int, typer.Option(help="words per matched sequence")] = 13,
    min_words: Annotated[int, typer.Option(help="eval rows shorter than --ngram match whole from this many words")]
    = 3,
    coverage: Annotated[float, typer.Option(help="share of an eval row's n-grams a training row must hold "
                                                 "(0 = any one shared n-gram, the common rule)")] = 0.0,
    boilerplate_rows: Annotated[int | None, typer.Option(
        help="ignore eval n-grams held by more training rows than this (template, system prompt); "
             "default max(10, 1% of rows)")] = None,
    output: Out = None, report: Report = None, format: Format = "auto",
) -> None:
    """Remove training rows that share a word n-gram with an eval row, boilerplate aside; the report gives the
    matched spans and the n-grams ignored as boilerplate."""
    from ftatlas.data.checks import short_span
    from ftatlas.data.tools import decontaminate_file

    try:
        with _bar("decontaminate") as progress:
            rep = decontaminate_file(file, against, out=output, report=report, format=format, ngram=ngram,
                                     min_words=min_words, coverage=coverage, boilerplate_rows=boilerplate_rows,
                                     progress=progress)
    except USER_ERRORS as e:
        fail(e)
    _summary(rep, f"overlap with {', '.join(against)}")
    out.print(f"  boilerplate ignored: {rep['train_boilerplate_ignored']} eval n-grams common to > "
              f"{rep['params']['boilerplate_rows']} training rows (whole or but for an edge), "
              f"{rep['boilerplate_ignored']} common to many eval rows", highlight=False)
    for c in rep["contaminated"][:3]:
        out.print(f"  {c['row']} <- {c['eval_rows'][0]}: {short_span(c['spans'][0])!r}", highlight=False)


def _range(name: str, low: float | None, high: float | None, checks: dict) -> None:
    if low is not None or high is not None:
        checks[name] = (low, high)


@data_app.command("filter")
def data_filter(
    file: Annotated[str, typer.Argument(help="data file")],
    min_words: Annotated[int | None, typer.Option(help="drop rows with fewer words")] = None,
    max_words: Annotated[int | None, typer.Option(help="drop rows with more words")] = None,
    max_chars: Annotated[int | None, typer.Option(help="drop rows with more characters")] = None,
    script: Annotated[str | None, typer.Option(help="keep rows written in this Unicode script (LATIN, CYRILLIC, "
                                                    "CJK, ARABIC, GREEK...)")] = None,
    min_script_share: Annotated[float, typer.Option(help="share of letters in --script needed")] = 0.8,
    max_repetition: Annotated[float | None, typer.Option(help="drop rows whose repeated word 3-gram share "
                                                              "exceeds this (0..1)")] = None,
    refusals: Annotated[bool, typer.Option("--refusals", help="drop answers with refusal phrases")] = False,
    max_perplexity: Annotated[float | None, typer.Option(help="drop rows the --model finds more surprising")]
    = None,
    model: Annotated[str | None, typer.Option(help="model for --max-perplexity (alias, dir, run dir)")] = None,
    min_reward: Annotated[float | None, typer.Option(help="drop rows whose answer scores below this")] = None,
    reward: Annotated[list[str] | None, typer.Option("--reward", help="reward for --min-reward (name, "
                                                                      "module:function or JSON); repeatable")] = None,
    reward_model: Annotated[str | None, typer.Option(help="reward model run dir for --min-reward")] = None,
    min_judge: Annotated[float | None, typer.Option(help="drop rows the judge rates below this (1-10)")] = None,
    judge: Annotated[str | None, typer.Option(help="judge for --min-judge: OpenAI-compatible URL or a model")]
    = None,
    min_judge_pairwise: Annotated[float | None, typer.Option(
        help="drop rows whose answer the judge does not prefer (both orders: 1 win, 0.5 tie, 0 loss) over a "
             "preference row's rejected answer or the --judge-against answer")] = None,
    judge_against: Annotated[str | None, typer.Option(help="answers to the same prompts for --min-judge-pairwise "
                                                           "(e.g. a base model's)")] = None,
    judge_model: Annotated[str, typer.Option(help="model name sent to a judge endpoint")] = "default",
    output: Out = None, report: Report = None, format: Format = "auto",
) -> None:
    """Rule filters (length, script, repetition, refusals) and score filters (perplexity, reward, judge) with a report
    of each score's distribution and the reason every removed row went."""
    from ftatlas.data.filters import FilterSpec
    from ftatlas.data.rejection import parse_reward
    from ftatlas.data.teachers import TeacherError
    from ftatlas.data.tools import filter_file
    from ftatlas.rewards import RewardError, RewardSpec

    checks: dict = {}
    _range("words", min_words, max_words, checks)
    _range("chars", None, max_chars, checks)
    if script:
        checks["script_share"] = (min_script_share, None)
    _range("repetition", None, max_repetition, checks)
    if refusals:
        checks["refusal"] = (None, 0.0)
    _range("perplexity", None, max_perplexity, checks)
    _range("reward", min_reward, None, checks)
    _range("judge", min_judge, None, checks)
    _range("judge_pairwise", min_judge_pairwise, None, checks)
    try:
        rewards = [parse_reward(r) for r in reward or []]
        if reward_model:
            rewards.append(RewardSpec(name="reward_model", path=reward_model))
        spec = FilterSpec(checks, script=script or "LATIN", model=model, rewards=rewards, judge=judge,
                          judge_model=judge_model, judge_against=judge_against)
        rep = filter_file(file, spec, out=output, report=report, format=format)
    except (*USER_ERRORS, RewardError, TeacherError) as e:
        fail(e)
    _summary(rep, ", ".join(f"{k}: {v}" for k, v in rep["removed_by"].items()) or "nothing matched")
    for name, d in rep["distributions"].items():
        out.print(f"  {name}: " + " ".join(f"{k}={v:g}" for k, v in d.items()), highlight=False)


@data_app.command("mix")
def data_mix(
    spec: Annotated[str, typer.Argument(help="mixture spec (.yaml): sources with weights or counts, seed, total")],
    output: Annotated[Path, typer.Option("--out", help="output file (.jsonl, .json, .txt)")] = Path("mix.jsonl"),
    report: Report = None,
) -> None:
    """Draw a seeded, weighted mixture of several files; the report gives per-source counts."""
    from ftatlas.data.tools import mix_file

    try:
        rep = mix_file(spec, out=output, report=report)
    except USER_ERRORS as e:
        fail(e)
    out.print(f"{rep['spec']}: {rep['rows']} rows (seed {rep['seed']}) -> {rep['output']}", highlight=False)
    for s in rep["sources"]:
        out.print(f"  {s['path']}: {s['taken']} of {s['available']} ({s['share']:.1%}), "
                  f"{s['repeated']} repeated, {s['left_out']} left out", highlight=False)

"""Synthetic instruction data from seed rows with a teacher (``ftatlas data synth``).

Three ways to get new instructions, each one teacher call per row, then one more call for the answer:

- ``self-instruct`` (Wang et al. 2022): show ``k`` random seed instructions, ask for one new, different task;
- ``evol-instruct`` (WizardLM, Xu et al. 2023): rewrite one seed instruction with an in-depth evolution
  (add a constraint, deepen, make concrete, ask for steps of reasoning);
- ``documents``: from a seed passage (text rows), ask a question the passage answers; the answer is
  generated with the passage in context.

Generated rows are then de-duplicated against the seeds and each other (the same exact + MinHash test as
``data dedup``) and optionally filtered by any ``data filter`` measure (reward functions, reward model,
rules). Each kept row is a ``messages`` row with a ``provenance`` object: teacher, mode, the seed rows
used, the prompt and the index. The report lists every dropped row with its reason.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ftatlas.data.decontam import prompt_text
from ftatlas.data.table import Row, load_table, write_report, write_rows
from ftatlas.data.teachers import Teacher
from ftatlas.recipe import DecodeSpec

Mode = Literal["auto", "self-instruct", "evol-instruct", "documents"]

SELF_INSTRUCT = ("Here are some tasks that users gave to an AI assistant:\n\n{examples}\n\n"
                 "Write one new task for the assistant. It must be different from every task above, "
                 "self-contained and answerable in a few sentences. Reply with the task only.")
EVOLUTIONS = {
    "constraints": "Add one more constraint or requirement to it.",
    "deepen": "Make it ask about the topic in more depth.",
    "concretize": "Replace general concepts with more specific ones.",
    "reasoning": "Make it require several explicit steps of reasoning.",
}
EVOL_INSTRUCT = ("Rewrite the following task into a slightly harder version. {how} The new task must stay "
                 "reasonable and answerable by a person. Reply with the new task only.\n\nTask: {seed}")
DOCUMENT = ("Read the passage and write one question that it answers. Reply with the question only.\n\n"
            "Passage:\n{seed}")
DOCUMENT_SYSTEM = "Answer the question using this passage.\n\nPassage:\n{seed}"
_LEAD = re.compile(r"^\s*(?:(?:new\s+)?(?:task|question|instruction)\s*[:\-]\s*|\d+[.)]\s+)", re.IGNORECASE)


@dataclass
class Draft:
    """One generated row on its way: the seed rows it came from, the instruction and the answer."""

    seeds: list[int]
    prompt: str  # what the teacher was asked to produce the instruction
    instruction: str = ""
    answer: str = ""
    system: str | None = None
    detail: str = ""  # the evolution used, for provenance


def seed_texts(rows: list[Row], mode: str) -> list[str]:
    """The instruction (or, for documents, the passage) each seed row offers."""
    if mode == "documents":
        return [r.text for r in rows]
    return [(prompt_text(r.record) or r.text).strip() for r in rows]


def resolve_mode(rows: list[Row], mode: Mode) -> str:
    if mode != "auto":
        return mode
    return "documents" if all(getattr(r.record, "is_text", False) and not hasattr(r.record, "columns")
                              and not hasattr(r.record, "chosen") for r in rows) else "self-instruct"


def plan(seeds: list[str], mode: str, n: int, k: int, rng: random.Random) -> list[Draft]:
    """``n`` instruction requests, each naming the seed rows it shows the teacher."""
    drafts = []
    evolutions = list(EVOLUTIONS)
    for i in range(n):
        if mode == "self-instruct":
            pick = rng.sample(range(len(seeds)), min(k, len(seeds)))
            examples = "\n".join(f"{j + 1}. {seeds[s]}" for j, s in enumerate(pick))
            drafts.append(Draft(pick, SELF_INSTRUCT.format(examples=examples)))
        elif mode == "evol-instruct":
            s, how = rng.randrange(len(seeds)), evolutions[i % len(evolutions)]
            drafts.append(Draft([s], EVOL_INSTRUCT.format(how=EVOLUTIONS[how], seed=seeds[s]), detail=how))
        elif mode == "documents":
            s = i % len(seeds)
            drafts.append(Draft([s], DOCUMENT.format(seed=seeds[s]), system=DOCUMENT_SYSTEM.format(seed=seeds[s])))
        else:
            raise ValueError(f"unknown synth mode {mode!r}; expected self-instruct, evol-instruct or documents")
    return drafts


def clean_instruction(text: str) -> str:
    """The first paragraph, without a leading "Task:" or list number the teacher may add."""
    first = text.strip().split("\n\n", 1)[0].strip()
    return _LEAD.sub("", first).strip().strip('"').strip()


def _drop(dropped: list[dict[str, Any]], i: int, reason: str, d: Draft) -> None:
    dropped.append({"index": i, "reason": reason, "instruction": d.instruction[:200], "answer": d.answer[:200]})


def _row(d: Draft, i: int, mode: str, teacher: str, seed_rows: list[Row]) -> dict[str, Any]:
    msgs = ([{"role": "system", "content": d.system}] if d.system else [])
    msgs += [{"role": "user", "content": d.instruction}, {"role": "assistant", "content": d.answer}]
    prov = {"teacher": teacher, "mode": mode, "seeds": [seed_rows[s].where for s in d.seeds], "index": i}
    if d.detail:
        prov["evolution"] = d.detail
    return {"messages": msgs, "provenance": prov}


def _dedup_against_seeds(rows: list[dict[str, Any]], seeds: list[str], threshold: float
                         ) -> dict[int, str]:
    """Generated row index -> why it duplicates (a seed or an earlier generated row)."""
    from ftatlas.data.dedup import find_clusters

    texts = seeds + [r["messages"][-2]["content"] for r in rows]  # the new instruction vs seed instructions
    why: dict[int, str] = {}
    for group in find_clusters(texts, threshold=threshold, near=_near()):
        first = group[0]
        for j in group[1:]:
            if j >= len(seeds):
                why[j - len(seeds)] = (f"duplicate of seed {first + 1}" if first < len(seeds)
                                       else f"duplicate of generated {first - len(seeds)}")
    return why


def _near() -> bool:
    from ftatlas.data.checks import _near_available

    return _near_available()


def synthesize(seeds_path: str | Path, teacher: Teacher, out: str | Path, *, report: str | Path | None = None,
               mode: Mode = "auto", n: int = 16, k: int = 3, seed: int = 0, format: str = "auto",
               instruct_decode: DecodeSpec | None = None, answer_decode: DecodeSpec | None = None,
               filters: Any = None, dedup_threshold: float = 0.7) -> dict[str, Any]:
    """Generate ``n`` rows from the seeds with the teacher, drop duplicates and filtered rows, write both files."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    start = time.perf_counter()
    seed_rows = load_table(seeds_path, format)
    mode_used = resolve_mode(seed_rows, mode)
    seeds = seed_texts(seed_rows, mode_used)
    drafts = plan(seeds, mode_used, n, k, random.Random(seed))
    instruct = instruct_decode or DecodeSpec(max_new_tokens=96, do_sample=True, temperature=0.8, seed=seed)
    answer = answer_decode or DecodeSpec(max_new_tokens=256, seed=seed)
    for d, text in zip(drafts, teacher.complete([[{"role": "user", "content": d.prompt}] for d in drafts],
                                                instruct), strict=True):
        d.instruction = clean_instruction(text)
    dropped: list[dict[str, Any]] = []
    asked = [i for i, d in enumerate(drafts) if d.instruction]
    for i, d in enumerate(drafts):
        if not d.instruction:
            _drop(dropped, i, "empty instruction", d)
    chats = [([{"role": "system", "content": drafts[i].system}] if drafts[i].system else [])
             + [{"role": "user", "content": drafts[i].instruction}] for i in asked]
    for i, text in zip(asked, teacher.complete(chats, answer), strict=True):
        drafts[i].answer = text.strip()
    rows, index = [], []
    for i in asked:
        if drafts[i].answer:
            rows.append(_row(drafts[i], i, mode_used, teacher.name, seed_rows))
            index.append(i)
        else:
            _drop(dropped, i, "empty answer", drafts[i])
    dupes = _dedup_against_seeds(rows, seeds if mode_used != "documents" else [], dedup_threshold)
    for j, why in dupes.items():
        _drop(dropped, index[j], why, drafts[index[j]])
    keep = [j for j in range(len(rows)) if j not in dupes]
    distributions: dict[str, Any] = {}
    if filters is not None and filters.checks and keep:
        from ftatlas.data.filters import filter_rows
        from ftatlas.data.readers import _messages
        from ftatlas.data.table import record_text

        cand = [Row(rows[j], "synth", index[j], "", _messages(rows[j])) for j in keep]
        for c in cand:
            c.text = record_text(c.record)
        result = filter_rows(cand, filters)
        distributions = result.distributions()
        for r in result.removed:
            j = keep[r["index"]]
            _drop(dropped, index[j], "; ".join(r["reasons"]), drafts[index[j]])
        keep = [keep[i] for i in result.kept]
    out_p = Path(out)
    rep_p = Path(report) if report else out_p.with_name(f"{out_p.stem}.report.json")
    write_rows(out_p, [rows[j] for j in keep])
    body = {"tool": "synth", "seeds": str(seeds_path), "teacher": teacher.name, "mode": mode_used, "requested": n,
            "kept": len(keep), "removed": n - len(keep), "dropped": sorted(dropped, key=lambda x: x["index"]),
            "distributions": distributions, "output": str(out_p), "report": str(rep_p),
            "seconds": round(time.perf_counter() - start, 2)}
    write_report(rep_p, body)
    return body

"""Data tools measured: dedup precision/recall on planted near-duplicates, decontamination recall on planted
eval leaks, throughput (rows/s) and peak memory at 100k rows, each side by side with what a user would
otherwise write. Writes bench/results/data.{md,json}.

Corpus: random instruction/answer rows (words drawn from a seeded 5,000-word vocabulary, 20-60 words per
row), then planted copies: exact duplicates (case and punctuation changed) and near duplicates (1-3 words
replaced, inserted or deleted). Leaks: eval rows copied into training rows whole, with another answer,
inside longer text, or reformatted (another template: case, spacing, punctuation). Templates that are not
leaks: a fifth of the training rows start with one shared system prompt, another fifth with a ticket header
around a number ("Ticket 417 from the help desk queue ..."), and so do 8 eval rows each (too few for the eval
side's own boilerplate rule), so any-one-13-gram matching without a boilerplate rule flags clean rows.

Baselines:
- dedup: ``exact`` = drop rows whose raw text repeats (``set``/``pandas.drop_duplicates``); ``datasketch
  README`` = one ``MinHash(num_perm=128)`` per row fed word 3-grams one ``update`` at a time, ``MinHashLSH``
  query then insert, every LSH candidate removed (no verification);
- decontaminate: ``substring`` = drop a training row when an eval prompt string occurs in it verbatim; ``any
  13-gram`` = the common rule with no boilerplate handling on the training side (``--boilerplate-rows`` set
  to the row count); ``--coverage 0.5`` = the share rule (a row must hold half of an eval row's 13-grams).

Each tool runs in its own subprocess so peak RSS is its own.

    python bench/data.py                 # 100k rows
    python bench/data.py --rows 20000    # quicker
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def vocab(n: int, rng: random.Random) -> list[str]:
    syll = ["ka", "lo", "mi", "ne", "tu", "ra", "shi", "po", "ve", "zu", "an", "el", "or", "im", "us", "qua"]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choice(syll) for _ in range(rng.randint(2, 4))))
    return sorted(out)


def sentence(words: list[str], rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))


def perturb(text: str, words: list[str], rng: random.Random) -> str:
    toks = text.split()
    for _ in range(rng.randint(1, 3)):
        op, i = rng.choice(("sub", "ins", "del")), rng.randrange(len(toks))
        if op == "sub":
            toks[i] = rng.choice(words)
        elif op == "ins":
            toks.insert(i, rng.choice(words))
        elif len(toks) > 5:
            del toks[i]
    return " ".join(toks)


SYSTEM = "You are a careful assistant for the archive team and you answer every question in plain words."


def templated(r: dict, k: int, rng: random.Random) -> dict:
    """Row ``r`` behind the shared system prompt (k % 5 == 0) or a ticket header around a number (k % 5 == 1)."""
    if k % 5 == 0:
        return {**r, "instruction": f"{SYSTEM} {r['instruction']}"}
    if k % 5 == 1:
        return {**r, "instruction": f"Ticket {rng.randint(1, 999)} from the help desk queue, please answer it "
                                    f"now: {r['instruction']}"}
    return r


def make_corpus(n_rows: int, seed: int, out: Path) -> dict:
    """train.jsonl with planted duplicates, eval.jsonl, train_leaky.jsonl with planted leaks; the truth."""
    rng = random.Random(seed)
    words = vocab(5000, rng)
    n_exact, n_near = n_rows // 20, n_rows // 20
    base = [{"instruction": sentence(words, rng, 8, 20), "output": sentence(words, rng, 12, 40)}
            for _ in range(n_rows - n_exact - n_near)]
    rows = [dict(r, _src=-1) for r in base]
    for _ in range(n_exact):
        j = rng.randrange(len(base))
        rows.append({"instruction": base[j]["instruction"].upper() + "!", "output": base[j]["output"], "_src": j})
    for _ in range(n_near):
        j = rng.randrange(len(base))
        rows.append({"instruction": base[j]["instruction"], "output": perturb(base[j]["output"], words, rng),
                     "_src": j, "_near": True})
    rng.shuffle(rows)
    planted = {i for i, r in enumerate(rows) if r["_src"] >= 0}
    # the first row of each group (a base row or one of its copies) stays; the truth is every later one
    base_index = {}
    for i, r in enumerate(rows):
        if r["_src"] < 0:
            base_index[r["instruction"] + "\x00" + r["output"]] = i
    group_of = {}
    for i, r in enumerate(rows):
        b = base[r["_src"]] if r["_src"] >= 0 else r
        group_of[i] = base_index[b["instruction"] + "\x00" + b["output"]]
    members: dict[int, list[int]] = {}
    for i, g in group_of.items():
        members.setdefault(g, []).append(i)
    dupes = {i for m in members.values() for i in sorted(m)[1:]}
    assert len(dupes) == len(planted)
    with open(out / "train.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}) + "\n")
    # eval set and leaks
    ev = [{"instruction": sentence(words, rng, 8, 20), "output": sentence(words, rng, 3, 10)} for _ in range(1000)]
    ev = [templated(r, k, rng) if k < 40 and k % 5 < 2 else r for k, r in enumerate(ev)]  # 8 + 8 templated
    with open(out / "eval.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in ev)
    leaky = [templated({k: v for k, v in r.items() if not k.startswith("_")}, k, rng)
             for k, r in enumerate(rows[:n_rows])]
    leaks: dict[int, str] = {}
    kinds = ("whole", "other answer", "inside text", "reformatted")
    for k, (e, i) in enumerate(zip(rng.sample(ev, 500), rng.sample(range(len(leaky)), 500), strict=True)):
        kind = kinds[k % len(kinds)]
        if kind == "whole":
            leaky[i] = dict(e)
        elif kind == "other answer":
            leaky[i] = {"instruction": e["instruction"], "output": sentence(words, rng, 12, 40)}
        elif kind == "inside text":
            leaky[i] = {"instruction": "Consider this. " + e["instruction"] + " " + e["output"],
                        "output": sentence(words, rng, 12, 40)}
        else:  # copied through another template: case, spacing and punctuation differ
            leaky[i] = {"instruction": "Q: " + e["instruction"].capitalize().replace(" ", "  ", 3) + "?",
                        "output": "A: " + e["output"] + "."}
        leaks[i] = kind
    with open(out / "train_leaky.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in leaky)
    return {"dupes": sorted(dupes), "near": sorted(i for i in dupes if rows[i].get("_near")),
            "leaks": {str(i): k for i, k in leaks.items()}}


# --- the tools, each run in a child process -------------------------------------------------------------


def tool_ours_dedup(work: Path) -> dict:
    from ftatlas.data.tools import dedup_file

    rep = dedup_file(work / "train.jsonl", out=work / "o.jsonl", report=work / "o.json")
    removed = [int(r["row"].rsplit(":", 1)[1]) - 1 for c in rep["clusters"] for r in c["removed"]]
    return {"removed": removed}


def tool_ours_dedup_05(work: Path) -> dict:
    from ftatlas.data.tools import dedup_file

    rep = dedup_file(work / "train.jsonl", out=work / "o.jsonl", report=work / "o.json", threshold=0.5)
    return {"removed": [int(r["row"].rsplit(":", 1)[1]) - 1 for c in rep["clusters"] for r in c["removed"]]}


def tool_exact_dedup(work: Path) -> dict:
    seen, removed = set(), []
    for i, line in enumerate(open(work / "train.jsonl")):
        r = json.loads(line)
        key = r["instruction"] + "\x00" + r["output"]
        if key in seen:
            removed.append(i)
        seen.add(key)
    return {"removed": removed}


def tool_readme_dedup(work: Path) -> dict:
    from datasketch import MinHash, MinHashLSH

    lsh, removed = MinHashLSH(threshold=0.7, num_perm=128), []
    for i, line in enumerate(open(work / "train.jsonl")):
        r = json.loads(line)
        toks = (r["instruction"] + " " + r["output"]).lower().split()
        m = MinHash(num_perm=128)
        for j in range(max(1, len(toks) - 2)):
            m.update(" ".join(toks[j : j + 3]).encode("utf8"))
        if lsh.query(m):
            removed.append(i)
        else:
            lsh.insert(str(i), m)
    return {"removed": removed}


def tool_ours_decontam(work: Path) -> dict:
    from ftatlas.data.tools import decontaminate_file

    rep = decontaminate_file(work / "train_leaky.jsonl", [str(work / "eval.jsonl")], out=work / "d.jsonl",
                             report=work / "d.json")
    return {"removed": [int(c["row"].rsplit(":", 1)[1]) - 1 for c in rep["contaminated"]]}


def tool_share_decontam(work: Path) -> dict:
    from ftatlas.data.tools import decontaminate_file

    rep = decontaminate_file(work / "train_leaky.jsonl", [str(work / "eval.jsonl")], out=work / "d.jsonl",
                             report=work / "d.json", coverage=0.5)
    return {"removed": [int(c["row"].rsplit(":", 1)[1]) - 1 for c in rep["contaminated"]]}


def tool_plain_decontam(work: Path) -> dict:
    from ftatlas.data.tools import decontaminate_file

    rep = decontaminate_file(work / "train_leaky.jsonl", [str(work / "eval.jsonl")], out=work / "d.jsonl",
                             report=work / "d.json", boilerplate_rows=10**9)
    return {"removed": [int(c["row"].rsplit(":", 1)[1]) - 1 for c in rep["contaminated"]]}


def tool_substring_decontam(work: Path) -> dict:
    prompts = [json.loads(x)["instruction"] for x in open(work / "eval.jsonl")]
    removed = []
    for i, line in enumerate(open(work / "train_leaky.jsonl")):
        r = json.loads(line)
        text = r["instruction"] + "\n" + r["output"]
        if any(p in text for p in prompts):
            removed.append(i)
    return {"removed": removed}


def child(tool: str, work: Path) -> None:
    start = time.perf_counter()
    out = globals()[f"tool_{tool}"](work)
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def run_tool(tool: str, work: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", tool, "--work", str(work)], capture_output=True,
                         text=True, cwd=ROOT)
    if res.returncode:
        raise RuntimeError(f"{tool} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def scores(removed: list[int], truth: set[int]) -> dict:
    got = set(removed)
    tp = len(got & truth)
    return {"removed": len(got), "precision": round(tp / len(got), 4) if got else 1.0,
            "recall": round(tp / len(truth), 4) if truth else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child")
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.work)
        return
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    truth = make_corpus(args.rows, args.seed, work)
    dupes, near = set(truth["dupes"]), set(truth["near"])
    leaks = {int(i): k for i, k in truth["leaks"].items()}
    rows = []
    for name, tool in (("ftatlas dedup", "ours_dedup"), ("ftatlas dedup --threshold 0.5", "ours_dedup_05"),
                       ("exact (set of raw text)", "exact_dedup"),
                       ("datasketch README loop", "readme_dedup")):
        r = run_tool(tool, work)
        s = scores(r["removed"], dupes)
        s["near_recall"] = round(len(set(r["removed"]) & near) / len(near), 4)
        rows.append({"task": "dedup", "tool": name, **s, "seconds": round(r["seconds"], 1),
                     "rows_per_s": round(args.rows / r["seconds"]), "peak_rss_mib": round(r["peak_rss_mib"])})
    for name, tool in (("ftatlas decontaminate", "ours_decontam"), ("ftatlas decontaminate --coverage 0.5",
                                                                      "share_decontam"),
                       ("any 13-gram, no boilerplate rule", "plain_decontam"),
                       ("substring of eval prompt", "substring_decontam")):
        r = run_tool(tool, work)
        s = scores(r["removed"], set(leaks))
        by_kind = {k: round(sum(1 for i in r["removed"] if leaks.get(i) == k) / sum(1 for v in leaks.values()
                                                                                      if v == k), 4)
                   for k in ("whole", "other answer", "inside text", "reformatted")}
        rows.append({"task": "decontaminate", "tool": name, **s, "recall_by_kind": by_kind,
                     "seconds": round(r["seconds"], 1), "rows_per_s": round(args.rows / r["seconds"]),
                     "peak_rss_mib": round(r["peak_rss_mib"])})
    ours = {r["task"]: r for r in rows[::-1] if r["tool"] in ("ftatlas dedup", "ftatlas decontaminate")}
    for r in rows:
        r["time_vs_ftatlas"] = round(r["seconds"] / ours[r["task"]]["seconds"], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"rows": args.rows, "planted_duplicates": len(dupes), "planted_near": len(near),
            "planted_leaks": len(leaks), "eval_rows": 1000, "templated_train_rows": 2 * args.rows // 5,
            "templated_eval_rows": 16, "cpus": __import__("os").cpu_count()}
    (RESULTS / "data.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# Data tools at {args.rows:,} rows ({len(dupes):,} planted duplicates, {len(near):,} of them near; "
             f"{len(leaks)} planted eval leaks against 1,000 eval rows; 40% of training rows and 16 eval rows "
             "templated)", "",
             "| task | tool | removed | precision | recall | near / per-kind recall | s | rows/s | peak RSS MiB "
             "| time vs ftatlas |", "|" + " --- |" * 10]
    for r in rows:
        extra = r.get("near_recall", r.get("recall_by_kind"))
        lines.append(f"| {r['task']} | {r['tool']} | {r['removed']:,} | {r['precision']:.3f} | {r['recall']:.3f} "
                     f"| {extra} | {r['seconds']} | {r['rows_per_s']:,} | {r['peak_rss_mib']} "
                     f"| {r['time_vs_ftatlas']} |")
    (RESULTS / "data.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""What an eval leak does to a held-out score, and what ``ftatlas data decontaminate`` gives back.

The built-in knowledge task (held-out questions ask about facts that appear in no training answer, so a
model that has not seen them scores about 0) is written to files; ``--leak`` of its held-out rows are
copied once into the training file. ``ftatlas data decontaminate`` cleans that file against the held-out
file, and an arena trains the same LoRA on both (SmolLM2-135M, a few epochs) and scores the same held-out
rows. The score is split into the leaked and the never-seen held-out rows, so the inflation is visible
where it happens; the arena itself refuses the leaky cell a verdict (``allow_overlap`` is left false).
Writes bench/results/data_leak.{md,json}.

    python bench/data_leak.py                       # 25 of 50 held-out rows leaked, 80 steps (~2 epochs)
    python bench/data_leak.py --steps 40 --eval 30  # quicker
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
METRICS = ("contains", "normalized_match")


def subset_scores(cell_dir: Path, held: list[dict], leaked: set[int]) -> dict[str, dict[str, float]]:
    """Each metric's mean over the leaked and the never-seen held-out rows (1-based lines of eval.jsonl), from
    every prediction in the cell's eval.json, scored by the same metric functions as the arena."""
    from ftatlas.evaluate.metrics import contains, normalized_match

    score = {"contains": contains, "normalized_match": normalized_match}
    preds = json.loads((cell_dir / "eval.json").read_text())["predictions"]
    out: dict[str, dict[str, float]] = {}
    for part, want in (("leaked", True), ("unseen", False)):
        rows = [(p["prediction"], held[int(p["source"].rsplit(":", 1)[1]) - 1]["messages"][-1]["content"])
                for p in preds if (int(p["source"].rsplit(":", 1)[1]) in leaked) == want]
        out[part] = {m: round(sum(score[m](p, r) for p, r in rows) / len(rows), 4) if rows else 0.0
                     for m in METRICS}
        out[part]["n"] = len(rows)
    return out


def main() -> None:
    from ftatlas.arena import load_arena, run_arena
    from ftatlas.data.splits import load_builtin
    from ftatlas.data.tools import decontaminate_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--leak", type=int, default=25)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--eval", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-leak-"))
    train = [r.to_json() for r in load_builtin("knowledge", "train")]
    held = [r.to_json() for r in load_builtin("knowledge", "eval")][: args.eval]
    rng = random.Random(0)
    leaked_lines = set(rng.sample(range(1, len(held) + 1), min(args.leak, len(held))))
    leaked_rows = [held[i - 1] for i in sorted(leaked_lines)]
    leaky = train + leaked_rows
    rng.shuffle(leaky)
    for name, rows in (("train_leaky", leaky), ("eval", held)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = decontaminate_file(work / "train_leaky.jsonl", [str(work / "eval.jsonl")], out=work / "train_clean.jsonl")
    spec = {
        "name": "leak", "model": {"name": "smollm2-135m"},
        "data": {"train": str(work / "train_leaky.jsonl"), "eval": str(work / "eval.jsonl"), "max_length": 128},
        "train": {"max_steps": args.steps, "batch_size": 8, "lr": args.lr, "log_every": 10},
        "eval": {"max_examples": args.eval, "batch_size": 25, "decode": {"max_new_tokens": 24},
                 "metrics": list(METRICS)},
        "output": {"dir": str(work / "arena")},
        "cells": [{"name": "leaky", "method": {"name": "lora", "r": 16, "alpha": 32}},
                  {"name": "decontaminated", "method": {"name": "lora", "r": 16, "alpha": 32},
                   "data": {"train": str(work / "train_clean.jsonl")}}],
    }
    (work / "arena.yaml").write_text(yaml.safe_dump(spec))
    start = time.perf_counter()
    root, rows = run_arena(load_arena(work / "arena.yaml"))
    wall = round(time.perf_counter() - start)
    for r in rows:
        r["by_subset"] = subset_scores(root / "cells" / r["cell"], held, leaked_lines)
    table = (root / "table.md").read_text()
    RESULTS.mkdir(parents=True, exist_ok=True)
    epochs = args.steps * 8 / len(leaky)
    out = {"leaked": len(leaked_rows), "train_rows": len(train), "removed_by_decontaminate": rep["removed"],
           "steps": args.steps, "lr": args.lr, "epochs": round(epochs, 2), "eval_rows": len(held),
           "arena_seconds": wall,
           "rows": [{k: r.get(k) for k in ("cell", "metrics", "ci95", "by_subset", "train_eval_overlap",
                                           "train_seconds", "no_verdict")} for r in rows]}
    (RESULTS / "data_leak.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# Eval leak vs decontaminated: {out['leaked']} of {len(held)} held-out rows leaked once into "
             f"{len(train)} training rows; decontaminate removed {rep['removed']}", "",
             f"SmolLM2-135M, LoRA r=16, {args.steps} steps of batch 8 (~{epochs:.1f} epochs), lr {args.lr}; "
             f"arena wall time {wall} s", "",
             "| cell | contains, leaked rows | contains, unseen rows | contains, all held-out | normalized_match, all "
             "| training rows overlapping held-out |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        s = r["by_subset"]
        lines.append(f"| {r['cell']} | {s['leaked']['contains']:.1%} (n={s['leaked']['n']}) | "
                     f"{s['unseen']['contains']:.1%} (n={s['unseen']['n']}) | {r['metrics']['contains']:.1%} | "
                     f"{r['metrics']['normalized_match']:.1%} | {r.get('train_eval_overlap')} |")
    text = "\n".join(lines) + "\n\nThe arena's own table:\n\n" + table
    (RESULTS / "data_leak.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

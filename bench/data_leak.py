"""What an eval leak does to a held-out score, and what ``ftatlas data decontaminate`` gives back.

The built-in knowledge task (held-out questions ask about facts that appear in no training answer) is
written to files; ``--leak`` of its held-out rows are copied into the training file. ``ftatlas data
decontaminate`` then cleans that file against the held-out file, and an arena trains the same LoRA on
both (SmolLM2-135M) and scores the same held-out rows. The leaky cell's score is inflated by
memorised answers; the arena itself refuses it a verdict (``allow_overlap`` is left false).
Writes bench/results/data_leak.{md,json}.

    python bench/data_leak.py                     # 25 of 50 held-out rows leaked, 40 steps
    python bench/data_leak.py --steps 20 --eval 30
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    from ftatlas.arena import load_arena, run_arena
    from ftatlas.data.splits import load_builtin
    from ftatlas.data.tools import decontaminate_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--leak", type=int, default=25)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-leak-"))
    train = [r.to_json() for r in load_builtin("knowledge", "train")]
    held = [r.to_json() for r in load_builtin("knowledge", "eval")][: args.eval]
    rng = random.Random(0)
    leaky = train + rng.sample(held, min(args.leak, len(held)))
    rng.shuffle(leaky)
    for name, rows in (("train_leaky", leaky), ("eval", held)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = decontaminate_file(work / "train_leaky.jsonl", [str(work / "eval.jsonl")], out=work / "train_clean.jsonl")
    spec = {
        "name": "leak", "model": {"name": "smollm2-135m"},
        "data": {"train": str(work / "train_leaky.jsonl"), "eval": str(work / "eval.jsonl"), "max_length": 128},
        "train": {"max_steps": args.steps, "batch_size": 8, "lr": 3.0e-4, "log_every": 5},
        "eval": {"max_examples": args.eval, "batch_size": 25, "decode": {"max_new_tokens": 24},
                 "metrics": ["contains", "normalized_match"]},
        "output": {"dir": str(work / "arena")},
        "cells": [{"name": "leaky", "method": {"name": "lora", "r": 16, "alpha": 32}},
                  {"name": "decontaminated", "method": {"name": "lora", "r": 16, "alpha": 32},
                   "data": {"train": str(work / "train_clean.jsonl")}}],
    }
    (work / "arena.yaml").write_text(yaml.safe_dump(spec))
    root, rows = run_arena(load_arena(work / "arena.yaml"))
    table = (root / "table.md").read_text()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"leaked": len(leaky) - len(train), "removed_by_decontaminate": rep["removed"],
           "rows": [{k: r.get(k) for k in ("cell", "metrics", "ci95", "train_eval_overlap", "train_seconds")}
                    for r in rows]}
    (RESULTS / "data_leak.json").write_text(json.dumps(out, indent=1) + "\n")
    head = (f"# Eval leak vs decontaminated: {out['leaked']} held-out rows leaked into {len(train)} training rows; "
            f"decontaminate removed {rep['removed']}\n\nSmolLM2-135M, LoRA r=16, {args.steps} steps of batch 8, "
            f"{args.eval} held-out questions\n\n")
    (RESULTS / "data_leak.md").write_text(head + table)
    print(head + table)


if __name__ == "__main__":
    main()

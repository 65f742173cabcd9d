"""The Atlas' knowledge question, measured: zero-shot vs few-shot vs RAG vs LoRA vs RAG + LoRA.

Every setup of examples/knowledge/*.yaml runs on the built-in knowledge task (a made-up catalogue;
held-out questions ask about facts that appear in the documents but in no training answer) with
SmolLM2-135M, each in its own subprocess. Three metrics split the story: ``contains`` (the fact is in
the answer: knowledge), ``shape_match`` (the answer has the house form, e.g. ``<num> grams``, whatever
the fact: format/style) and ``normalized_match`` (exactly the value: both).
Prompt tokens per request is the cost every call pays. Writes bench/results/knowledge.{md,json}.

    python bench/knowledge.py                         # all five setups, 100 held-out questions
    python bench/knowledge.py --setups rag,lora_rag --eval 50
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SETUPS = ["zero_shot", "few_shot", "rag", "lora", "lora_rag"]


def run_one(setup: str, n_eval: int, out: Path) -> dict:
    from ftatlas.pipeline import train
    from ftatlas.resolve import load_recipe

    recipe = load_recipe(ROOT / "examples" / "knowledge" / f"{setup}.yaml", [
        f"eval.max_examples={n_eval}", f"output.dir={out}", f"output.name={setup}", "output.overwrite=true"])
    s = train(recipe, progress=False)
    fit, ev = s.results.get("fit"), s.results["after"]
    return {
        "setup": setup,
        "method": recipe.method.name,
        "context": recipe.context.name,
        "contains": ev["metrics"]["contains"],
        "shape_match": ev["metrics"]["shape_match"],
        "normalized_match": ev["metrics"]["normalized_match"],
        "prompt_tokens": ev["prompt_tokens_per_request"],
        "eval_s_per_example": round(ev["seconds"] / ev["n"], 2),
        "train_s": round(fit.stats.seconds) if fit else 0,
        "trainable_params": fit.params.trainable if fit else 0,
        "example": {k: ev["examples"][0][k] for k in ("prompt", "reference", "prediction")},
    }


def markdown(rows: list[dict], n_eval: int) -> str:
    lines = [f"| setup | method | context | fact in answer (contains, n={n_eval}) | house form (shape_match) | "
             "exact value (normalized_match) | prompt tokens / request | train time | eval s / question |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['setup']} | failed: {r['error'][:100]} | | | | | | | |")
            continue
        lines.append(f"| {r['setup']} | {r['method']} | {r['context']} | {100 * r['contains']:.0f}% | "
                     f"{100 * r['shape_match']:.0f}% | {100 * r['normalized_match']:.0f}% | {r['prompt_tokens']:.0f} | "
                     f"{r['train_s']} s | {r['eval_s_per_example']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated names from examples/knowledge/")
    ap.add_argument("--eval", type=int, default=100, dest="n_eval", help="held-out questions scored")
    ap.add_argument("--keep", help="write the run directories here (default: a temporary folder)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: run one setup, print its JSON row
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("ROW " + json.dumps(run_one(args.one, args.n_eval, Path(args.out))), flush=True)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or tmp
        for setup in [s for s in args.setups.split(",") if s]:
            t0 = time.time()
            proc = subprocess.run([sys.executable, __file__, "--one", setup, "--eval", str(args.n_eval),
                                   "--out", out], capture_output=True, text=True)
            row = next((json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")), None)
            if row is None:
                row = {"setup": setup, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            rows.append(row)
            print(f"{setup}: {json.dumps(row)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    table = markdown(rows, args.n_eval)
    print(table)
    if args.setups == ",".join(SETUPS) and args.n_eval == 100:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "knowledge.md").write_text(table + "\n")
        (RESULTS / "knowledge.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Side by side: every method for the same number of steps on the built-in task with SmolLM2-135M.

Each method runs from its shipped recipe (examples/<method>.yaml: its own learning rate) with the
same step count, batch and held-out rows, in its own subprocess so peak memory is not polluted by
the previous method. Prints a markdown table and writes bench/results/methods.{md,json}.

    python bench/methods.py                      # all methods, 30 steps, 50 held-out rows
    python bench/methods.py --methods lora,qlora --steps 60
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


def run_one(method: str, steps: int, n_eval: int, out: Path, extra: list[str]) -> dict:
    """Train + evaluate one method in this process; return its row."""
    from ftatlas.pipeline import train
    from ftatlas.resolve import load_recipe

    recipe = load_recipe(ROOT / "examples" / f"{method}.yaml", [
        f"train.max_steps={steps}", "train.batch_size=8", "train.log_every=5", f"eval.max_examples={n_eval}",
        f"output.dir={out}", f"output.name={method}", "output.overwrite=true", *extra])
    s = train(recipe, progress=False)
    fit, ev = s.results["fit"], s.results["after"]
    return {
        "method": method,
        "trainable_params": fit.params.trainable,
        "trainable_share": fit.params.share,
        "peak_rss_gib": round(fit.stats.peak_bytes / 2**30, 2),
        "s_per_step": round(fit.stats.seconds / steps, 2),
        "tokens_per_s": round(fit.tokens_per_s),
        "json_match": ev["metrics"]["json_match"],
        "final_loss": fit.train_loss,
    }


def markdown(rows: list[dict], steps: int, n_eval: int) -> str:
    head = (f"| method | trainable params | peak RSS (train) | s/step | train tokens/s | held-out json_match "
            f"after {steps} steps (n={n_eval}) |\n|---|---|---|---|---|---|")
    lines = [head]
    for r in sorted(rows, key=lambda r: -r.get("json_match", -1)):
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error'][:80]} | | | | |")
            continue
        lines.append(f"| {r['method']} | {r['trainable_params']:,} ({r['trainable_share']:.2%}) | "
                     f"{r['peak_rss_gib']:.2f} GiB | {r['s_per_step']:.2f} | {r['tokens_per_s']:,} | "
                     f"{100 * r['json_match']:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="", help="comma-separated example names; default: every registered "
                    "method plus the LoRA variants dora, rslora, pissa")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--eval", type=int, default=50, dest="n_eval")
    ap.add_argument("--set", action="append", default=[], help="recipe override for every method, e.g. train.lr=1e-3")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: run one method, print its JSON row
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("ROW " + json.dumps(run_one(args.one, args.steps, args.n_eval, Path(args.out), args.set)), flush=True)
        return
    from ftatlas.methods import METHODS

    variants = [v for v in ("dora", "rslora", "pissa") if (ROOT / "examples" / f"{v}.yaml").is_file()]
    methods = [m for m in args.methods.split(",") if m] or METHODS.names() + variants
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for m in methods:
            t0 = time.time()
            proc = subprocess.run([sys.executable, __file__, "--one", m, "--steps", str(args.steps), "--eval",
                                   str(args.n_eval), "--out", out, *(f"--set={x}" for x in args.set)],
                                  capture_output=True, text=True)
            row = next((json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")), None)
            if row is None:
                err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                row = {"method": m, "error": err}
            rows.append(row)
            print(f"{m}: {json.dumps(row)} ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    table = markdown(rows, args.steps, args.n_eval)
    print(table)
    if not args.set:  # runs with ad-hoc overrides (sweeps) do not replace the recorded results
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "methods.md").write_text(table + "\n")
        (RESULTS / "methods.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Quickstart speed, measured fairly: ``ftatlas quickstart`` of a reference checkout (by default the code of
commit 1492c86, when issue #19 was filed) against this checkout's, on this machine, one after the other.

Each side runs the real command in a fresh process (its own PYTHONPATH, a temporary run directory) and is
read back from its run directory: training seconds, non-pad tokens/s, peak RSS while training, held-out
json_match (the quickstart's metric) and the budget it trained. Target (issue #19): this checkout's training
>= 1.5x faster than the reference at the same held-out score. Run it under the heavy-work lock:

    git worktree add /work/wt/old1492 1492c86
    flock /tmp/ftatlas-heavy.lock python bench/quickstart_speed.py --side old --old-src /work/wt/old1492/src
    flock /tmp/ftatlas-heavy.lock python bench/quickstart_speed.py --side new

Each call adds its side to bench/results/defaults_quickstart.json (a later call replaces that side's entry)
and rewrites defaults_quickstart.md from both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GIB = 1024**3


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run_side(src: Path, label: str) -> dict:
    """One ``ftatlas quickstart`` from ``src`` in a temporary directory; its numbers from the run directory."""
    with tempfile.TemporaryDirectory(prefix=f"qs-{label}-") as tmp:
        env = os.environ | {"PYTHONPATH": str(src)}
        log = Path(tmp) / "log.txt"
        t0 = time.perf_counter()
        with log.open("w") as f:
            proc = subprocess.run([sys.executable, "-m", "ftatlas.cli", "quickstart", f"output.dir={tmp}/runs"],
                                  cwd=tmp, env=env, stdout=f, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        text = log.read_text(errors="replace")
        if proc.returncode:
            sys.exit(f"{label}: quickstart failed (exit {proc.returncode}):\n{text[-3000:]}")
        run = Path(tmp) / "runs" / "quickstart"
        summary = json.loads((run / "summary.json").read_text())
        after = json.loads((run / "eval.json").read_text())
    commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    plan = [ln for ln in text.splitlines() if ln.startswith(("gradient checkpointing", "budget", "early stopping"))]
    return {"label": label, "commit": commit, "src": str(src), "wall_seconds": round(wall, 1),
            "train_seconds": summary["train_seconds"], "tokens_per_s": summary.get("tokens_per_s"),
            "train_peak_gib": round(summary["train_peak_bytes"] / GIB, 3),
            "json_match": after["metrics"].get("json_match"), "n": after.get("n"),
            "gradient_checkpointing": summary.get("gradient_checkpointing"),
            "kept_step": summary.get("kept_step"), "eval_loss_curve": summary.get("eval_loss_curve"),
            "best_eval_loss": summary.get("best_eval_loss"), "log_plan": plan,
            "cpu": cpu_name(), "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def write_md(res: dict) -> str:
    old, new = res.get("old"), res.get("new")
    lines = ["# Quickstart: issue #19's code (1492c86) vs this checkout, same machine", "",
             f"CPU: {(new or old)['cpu']}, 2 cores; each side held the heavy-work lock (no other heavy job ran).", "",
             "| side | commit | train time | non-pad tokens/s | peak RSS (train) | held-out json_match | checkpointing "
             "| kept step | wall (whole command) |", "|---|---|---|---|---|---|---|---|---|"]
    for side in (old, new):
        if side:
            lines.append(f"| {side['label']} | {side['commit']} | {side['train_seconds']:.0f} s | "
                         f"{side['tokens_per_s']} | {side['train_peak_gib']:.2f} GiB | "
                         f"{100 * side['json_match']:.0f}% (n={side['n']}) | "
                         f"{'on' if side['gradient_checkpointing'] else 'off'} | {side['kept_step']} | "
                         f"{side['wall_seconds']:.0f} s |")
    if old and new:
        ratio = old["train_seconds"] / new["train_seconds"]
        lines += ["", f"**training {ratio:.2f}x faster** (target >= 1.5x at the same score: "
                  f"{'met' if ratio >= 1.5 and new['json_match'] >= old['json_match'] else 'NOT met'}); "
                  f"peak RSS {new['train_peak_gib'] / old['train_peak_gib']:.2f}x; held-out json_match "
                  f"{100 * old['json_match']:.0f}% -> {100 * new['json_match']:.0f}%."]
    for side in (old, new):
        if side:
            lines += ["", f"{side['label']} run log (plan lines):", "", "```", *side["log_plan"], "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", choices=["old", "new"], required=True)
    ap.add_argument("--old-src", default="/work/wt/old1492/src", help="src/ of the reference checkout")
    args = ap.parse_args()
    src = Path(args.old_src) if args.side == "old" else ROOT / "src"
    if not (src / "ftatlas").is_dir():
        sys.exit(f"--old-src {src}: no ftatlas package there (git worktree add /work/wt/old1492 1492c86)")
    label = "issue #19 filed (1492c86)" if args.side == "old" else "this checkout"
    side = run_side(src, label)
    print(json.dumps(side, indent=1), flush=True)
    out = RESULTS / "defaults_quickstart.json"
    res = json.loads(out.read_text()) if out.is_file() else {}
    res[args.side] = side
    out.write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / "defaults_quickstart.md").write_text(write_md(res))
    print(write_md(res))


if __name__ == "__main__":
    main()

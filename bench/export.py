"""What does each export cost on the task? One row per artifact of a run, side by side with the run itself.

Each artifact is written by ``ftatlas.export.api.export_run``, loaded in its real consumer (transformers or
llama.cpp) and re-scored on the run's held-out split with the run's metrics and decoding. Columns: size on
disk, every held-out metric with its bootstrap 95% interval, generation tokens/s in the consumer (answer
tokens / generation seconds, prompt processing included), and the logit parity against the fp32 run.
The baseline row is the unexported run (merged fp32 in transformers), scored in the same process as the
first artifact (``reuse_eval=False``), so its tokens/s compare with theirs.

    flock /tmp/ftatlas-heavy.lock python bench/export.py --run runs/quickstart
    python bench/export.py --run runs/quickstart --artifacts gguf:q8_0,gguf:q4_k_m
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT = "safetensors:bf16,gguf:f16,gguf:q8_0,gguf:q4_k_m,bnb-4bit:nf4"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _metric(row: dict, name: str) -> str:
    value = row.get("metrics", {}).get(name)
    if value is None:
        return "-"
    ci = row.get("ci95", {}).get(name)
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def table(reports: list[dict]) -> str:
    ref = reports[0]["reference"]  # scored in the same process as the first artifact
    names = list(ref["metrics"])
    head = ["artifact", "consumer", "size", *names, "gen tok/s", "logits rel diff", "argmax agree", "flag"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| " + " | ".join([f"run ({ref.get('from')})", "transformers",
                                    _size(reports[0]["source_fp32_bytes"]) + " (fp32)",
                                    *[_metric(ref, n) for n in names], str(ref.get("gen_tokens_per_s") or "-"),
                                    "-", "-", ""]) + " |")
    for r in reports:
        lp, exp = r["logit_parity"], r["export"]
        flag = "; ".join(f"{k} drop" for k in r["drops"]) or ("" if r["ok"] else "logit bound")
        lines.append("| " + " | ".join([f"{r['format']} {r['quant'] or ''}".strip(), r["consumer"],
                                        _size(r["size_bytes"]), *[_metric(exp, n) for n in names],
                                        str(exp.get("gen_tokens_per_s") or "-"), f"{lp['rel_diff']:.1e}",
                                        f"{lp['top1_agreement']:.1%}", flag]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a trained run directory (e.g. the quickstart's)")
    ap.add_argument("--artifacts", default=DEFAULT, help="comma-separated FORMAT:QUANT")
    ap.add_argument("--max-examples", type=int, default=None, help="held-out rows (default: the run's)")
    ap.add_argument("--name", default="export", help="bench/results/<name>.json and .md")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ftatlas.export.api import export_run

    reports = []
    with tempfile.TemporaryDirectory(prefix="ftatlas-bench-export-") as tmp:
        for spec in args.artifacts.split(","):
            fmt, _, quant = spec.partition(":")
            t0 = time.perf_counter()
            r = export_run(args.run, fmt, quant or None, Path(tmp) / spec.replace(":", "-"),
                           max_examples=args.max_examples, progress=False, reuse_eval=False)
            r["export_seconds"] = round(time.perf_counter() - t0, 1)
            reports.append(r)
            print(f"{spec}: {_size(r['size_bytes'])}, {r['export']['metrics']}, "
                  f"{r['export'].get('gen_tokens_per_s')} tok/s, {r['export_seconds']} s", flush=True)
            write(reports, args)  # after every artifact: a run cut short keeps what it measured
    print(table(reports))


def write(reports: list[dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(reports, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(f"# export bench: {args.run}\n\n{table(reports)}\n")


if __name__ == "__main__":
    main()

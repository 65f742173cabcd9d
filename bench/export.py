"""What does each export cost on the task? One row per artifact of a run, side by side with the run itself.

Each artifact is written by ``ftatlas.export.api.export_run``, loaded in its real consumer (transformers or
llama.cpp) and re-scored on the run's held-out split with the run's metrics and decoding. Columns: size on
disk, every held-out metric with its bootstrap 95% interval, generation tokens/s in the consumer (answer
tokens / generation seconds, prompt processing included), and the logit parity against the fp32 run.
The baseline row is the unexported run (merged fp32 in transformers), scored in the same process as the
first artifact (``reuse_eval=False``), so its tokens/s compare with theirs. Also per artifact: the seconds to
load it in its consumer and the peak RSS it adds there (load + scoring).

Without ``--run`` it first trains the quickstart recipe (SmolLM2-135M + LoRA on the contacts task) into
``runs/bench-export`` and reuses that run on later calls. ``--resume`` keeps the artifacts already measured
for the same run in ``bench/results/<name>.json``, so the bench can run in several shorter pieces.

    flock /tmp/ftatlas-heavy.lock python bench/export.py                      # train + every artifact
    flock /tmp/ftatlas-heavy.lock python bench/export.py --artifacts safetensors:bf16,gguf:f16
    flock /tmp/ftatlas-heavy.lock python bench/export.py --resume             # the rest, same run
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
DEFAULT = "safetensors:bf16,gguf:f16,gguf:q8_0,gguf:q4_k_m,bnb-4bit:nf4,int8"
OWN_RUN = ROOT / "runs" / "bench-export"  # the quickstart run this bench trains when --run is not given


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _metric(row: dict, name: str) -> str:
    value = row.get("metrics", {}).get(name)
    if value is None:
        return "-"
    ci = row.get("ci95", {}).get(name)
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _cost(r: dict) -> list[str]:
    cost = r.get("consumer_cost")
    if not cost:
        return ["—", "—"]
    return [f"{cost['load_seconds']:.1f}", _size(cost["peak_bytes"])]


def table(reports: list[dict]) -> str:
    ref = reports[0]["reference"]  # scored in the same process as the first artifact
    names = list(ref["metrics"])
    head = ["artifact", "consumer", "size", *names, "gen tok/s", "load s", "RSS added", "logits rel diff",
            "argmax agree", "flag"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.append("| " + " | ".join([f"run ({ref.get('from')})", "transformers",
                                    _size(reports[0]["source_fp32_bytes"]) + " (fp32)",
                                    *[_metric(ref, n) for n in names], str(ref.get("gen_tokens_per_s") or "-"),
                                    "—", "—", "-", "-", ""]) + " |")
    for r in reports:
        lp, exp = r["logit_parity"], r["export"]
        flag = "; ".join(f"{k} drop" for k in r["drops"]) or ("" if r["ok"] else "logit bound")
        lines.append("| " + " | ".join([f"{r['format']} {r['quant'] or ''}".strip(), r["consumer"],
                                        _size(r["size_bytes"]), *[_metric(exp, n) for n in names],
                                        str(exp.get("gen_tokens_per_s") or "-"), *_cost(r),
                                        f"{lp['rel_diff']:.1e}", f"{lp['top1_agreement']:.1%}", flag]) + " |")
    return "\n".join(lines)


def own_run() -> Path:
    """The quickstart recipe trained once into runs/bench-export (reused while its eval.json is there)."""
    if (OWN_RUN / "eval.json").is_file():
        print(f"reusing {OWN_RUN}", flush=True)
        return OWN_RUN
    from ftatlas.pipeline import train
    from ftatlas.quickstart import quickstart_recipe

    t0 = time.perf_counter()
    recipe = quickstart_recipe([f"output.dir={OWN_RUN.parent}", f"output.name={OWN_RUN.name}"])
    path = train(recipe, progress=False).run.path
    print(f"trained the quickstart recipe into {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return Path(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a trained run directory (default: train the quickstart recipe "
                    f"into {OWN_RUN.relative_to(ROOT)}, or reuse it)")
    ap.add_argument("--artifacts", default=DEFAULT, help="comma-separated FORMAT:QUANT")
    ap.add_argument("--max-examples", type=int, default=None, help="held-out rows (default: the run's)")
    ap.add_argument("--name", default="export", help="bench/results/<name>.json and .md")
    ap.add_argument("--resume", action="store_true",
                    help="keep the artifacts already in bench/results/<name>.json for this run; measure the rest")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from ftatlas.export.api import export_run

    args.run = str(Path(args.run).resolve()) if args.run else str(own_run().resolve())
    reports = previous(args) if args.resume else []
    done = {_spec(r) for r in reports}
    with tempfile.TemporaryDirectory(prefix="ftatlas-bench-export-") as tmp:
        for spec in args.artifacts.split(","):
            fmt, _, quant = spec.partition(":")
            if _spec({"format": fmt, "quant": quant or None}) in done:
                print(f"{spec}: kept from {args.name}.json", flush=True)
                continue
            t0 = time.perf_counter()
            r = export_run(args.run, fmt, quant or None, Path(tmp) / spec.replace(":", "-"),
                           max_examples=args.max_examples, progress=False, reuse_eval=bool(reports))
            r["export_seconds"] = round(time.perf_counter() - t0, 1)
            reports.append(r)
            print(f"{spec}: {_size(r['size_bytes'])}, {r['export']['metrics']}, "
                  f"{r['export'].get('gen_tokens_per_s')} tok/s, {r['export_seconds']} s", flush=True)
            write(reports, args)  # after every artifact: a run cut short keeps what it measured
    print(table(reports))


def _spec(r: dict) -> str:
    """``bnb-4bit:nf4``; a format's default quant and an explicit one are the same artifact (``gguf`` = q8_0)."""
    from ftatlas.export.formats import get_exporter

    return f"{r['format']}:{get_exporter(r['format']).check(r['quant']) or ''}"


def previous(args: argparse.Namespace) -> list[dict]:
    path = RESULTS / f"{args.name}.json"
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text()) if r["run"] == args.run]


def write(reports: list[dict], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(reports, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(f"# export bench: {args.run}\n\n{table(reports)}\n")


if __name__ == "__main__":
    main()

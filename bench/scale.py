"""Outgrowing one process, measured side by side in one run:

1. ``ftatlas train`` in 1 process x batch 8 against ``torchrun --nproc_per_node 2`` x batch 4 (same global batch,
   same rows; gloo on CPU, NCCL on GPUs), under DDP and under FSDP2: tokens/s and the largest per-process peak RSS
   (FSDP holds a shard of the weights per process). On a 2-core CPU two
   processes split the same cores (1 thread each instead of 2), so this shows the cost of the gradient all-reduce
   rather than a speed-up; on N GPUs it is the scaling.
2. The tokenized-rows cache (``data.cache_tokenized``): templating + tokenizing N rows cold, then the same rows warm.
3. A parquet source of M rows (default 200k) through tokenization: read in memory with the tokenized-rows cache
   cold, then warm, against ``streaming: true`` (read and tokenized row by row, as SFT trains from it): time and
   peak RSS of each (fresh processes).

    flock /tmp/ftatlas-heavy.lock python bench/scale.py                      # SmolLM2-135M, ~5 min on 2 cores
    python bench/scale.py --model path/to/tiny --steps 4 --cache-rows 2000 --stream-rows 20000   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import chat_rows  # noqa: E402  (the same deterministic mixed-length chat rows)


def child_peak(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``cmd`` in a fresh wrapper process: (wall seconds, largest peak RSS of any descendant in bytes, output)."""
    code = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(json.dumps([time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "p.returncode, p.stdout[-2000:] + p.stderr[-4000:]]))")
    done = subprocess.run([sys.executable, "-c", code, *cmd], env=env, capture_output=True, text=True, check=True)
    seconds, maxrss_kib, rc, output = json.loads(done.stdout)
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output}")
    return seconds, maxrss_kib * 1024, output


def tokens_per_s(run: Path) -> float:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r][1:]  # the first step warms up
    return statistics.median(rates) if rates else float("nan")


def processes(args: argparse.Namespace, work: Path) -> list[dict]:
    data = work / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(8 * args.steps + 8)))
    recipe = {"model": {"name": args.model}, "data": {"train": str(data), "eval_split": 0.05, "max_length": 512},
              "method": {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0},
              "train": {"max_steps": args.steps, "batch_size": 8, "log_every": 1, "scheduler": "constant"},
              "eval": {"max_examples": 1, "decode": {"max_new_tokens": 1}},
              "output": {"dir": str(work / "runs"), "overwrite": True}}
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "HF_DATASETS_CACHE": str(work / "hf")}
    cores = os.cpu_count() or 1
    out = []
    for n, engine in ((1, "none"), (2, "ddp"), (2, "fsdp")):
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"] if n > 1 else []
        name = f"p{n}-{engine}"
        cmd = [sys.executable, *launch, "-m", "ftatlas.cli", "train", str(path), f"output.name={name}",
               f"train.batch_size={8 // n}", f"train.distributed={engine}"]
        seconds, peak, _ = child_peak(cmd, env | {"OMP_NUM_THREADS": str(max(1, cores // n))})
        rate = tokens_per_s(work / "runs" / name)
        out.append({"processes": n, "engine": engine, "batch_per_process": 8 // n, "tokens_per_s": round(rate, 1),
                    "peak_rss_gib_per_process": round(peak / 2**30, 3), "wall_s": round(seconds, 1)})
        print(out[-1], flush=True)
    return out


def token_cache(args: argparse.Namespace, work: Path) -> dict:
    from ftatlas.data.readers import read_file
    from ftatlas.data.token_cache import encode_cached
    from ftatlas.models.loading import load_tokenizer, resolve_source

    data = work / "cache.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(args.cache_rows, seed=1)))
    rows = read_file(data)
    tokenizer = load_tokenizer(resolve_source(args.model))
    times = []
    for _ in ("cold", "warm"):
        t = time.perf_counter()
        _, stats, hit = encode_cached(tokenizer, rows, 1024, "assistant", work / "tok-cache")
        times.append((time.perf_counter() - t, hit))
    res = {"rows": len(rows), "tokens": stats.tokens, "cold_s": round(times[0][0], 2), "warm_s": round(times[1][0], 2),
           "warm_hit": times[1][1], "speedup": round(times[0][0] / times[1][0], 1)}
    print(res, flush=True)
    return res


STREAM_MODES = {
    # every mode reads all rows of the parquet file and templates + tokenizes each one, as training would
    "in_memory_cold": "rows = load_splits(spec).train; enc, stats, hit = encode_cached(tok, rows, 256, 'assistant', "
                      "cache); n, tokens = len(enc), stats.tokens",
    "in_memory_warm": "rows = load_splits(spec).train; enc, stats, hit = encode_cached(tok, rows, 256, 'assistant', "
                      "cache); n, tokens = len(enc), stats.tokens",
    "streaming": "data = StreamedEncoded(load_splits(spec).train, tok, 256, 'assistant'); n = tokens = 0\n"
                 "for row in data:\n    n += 1; tokens += len(row['input_ids'])",
}


def streaming(args: argparse.Namespace, work: Path) -> list[dict]:
    """A parquet file of ``--stream-rows`` rows through tokenization: in memory (the rows read whole, then the
    tokenized-rows cache cold and warm) against ``streaming: true`` (read and tokenized one row at a time)."""
    import datasets

    path = work / "big.parquet"
    datasets.Dataset.from_list([{"question": f"What is {i} plus one? " + "pad " * (i % 40), "answer": str(i + 1)}
                                for i in range(args.stream_rows)]).to_parquet(str(path))
    out = []
    for mode, body in STREAM_MODES.items():
        streamed = mode == "streaming"
        code = ("import json, time\n"
                "from ftatlas.data.splits import load_splits; from ftatlas.recipe import DataSpec\n"
                "from ftatlas.data.stream import StreamedEncoded; from ftatlas.data.token_cache import encode_cached\n"
                "from ftatlas.models.loading import load_tokenizer, resolve_source\n"
                f"tok = load_tokenizer(resolve_source({args.model!r})); cache = {str(work / 'tok-cache')!r}\n"
                "t = time.perf_counter()  # the work, after imports and the tokenizer\n"
                f"spec = DataSpec(train={{'path': {str(path)!r}, 'streaming': {streamed}, 'columns': "
                "{'instruction': 'question', 'output': 'answer'}}, eval_split=0.0)\n"
                f"{body}\nprint(json.dumps([n, tokens, time.perf_counter() - t]))")
        env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "HF_DATASETS_CACHE": str(work / "hf")}
        seconds, peak, output = child_peak([sys.executable, "-c", code], env)
        n, tokens, work_s = next(json.loads(line) for line in reversed(output.splitlines()) if line.startswith("["))
        out.append({"source_rows": args.stream_rows, "mode": mode, "rows_tokenized": n, "tokens": tokens,
                    "work_s": round(work_s, 1), "process_s": round(seconds, 1), "peak_rss_mib": round(peak / 2**20)})
        print(out[-1], flush=True)
    return out


def write_markdown(results: dict) -> str:
    """bench/results/scale.md: the sections of ``results`` as tables."""
    lines = [f"# bench/scale.py ({results.get('cpu_cores')} CPU cores, {results.get('model')})", ""]
    if "processes" in results:
        lines += ["| processes | engine | batch/process | tokens/s | peak RSS/process GiB | wall s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['processes']} | {r.get('engine', 'ddp' if r['processes'] > 1 else 'none')} | "
                  f"{r['batch_per_process']} | {r['tokens_per_s']} | "
                  f"{r['peak_rss_gib_per_process']} | {r['wall_s']} |" for r in results["processes"]]
        lines.append("")
    if "token_cache" in results:
        c = results["token_cache"]
        lines += [f"Tokenized-rows cache, {c['rows']} chat rows ({c['tokens']} tokens): cold {c['cold_s']} s, "
                  f"warm {c['warm_s']} s ({c['speedup']}x).", ""]
    if results.get("streaming") and "mode" in results["streaming"][0]:
        lines += ["| parquet rows | mode | rows tokenized | tokens | work s | process s | peak RSS MiB |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['source_rows']} | {r['mode']} | {r['rows_tokenized']} | {r['tokens']} | {r['work_s']} | "
                  f"{r['process_s']} | {r['peak_rss_mib']} |" for r in results["streaming"]]
    text = "\n".join(lines) + "\n"
    (RESULTS / "scale.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--cache-rows", type=int, default=20000)
    ap.add_argument("--stream-rows", type=int, default=200_000)
    ap.add_argument("--only", choices=["processes", "cache", "streaming"])
    args = ap.parse_args()
    results: dict = {"cpu_cores": os.cpu_count(), "model": args.model}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "processes"):
            results["processes"] = processes(args, work)
        if args.only in (None, "cache"):
            results["token_cache"] = token_cache(args, work)
        if args.only in (None, "streaming"):
            results["streaming"] = streaming(args, work)
    RESULTS.mkdir(parents=True, exist_ok=True)
    saved = RESULTS / "scale.json"  # a partial run (--only) keeps the other sections' last results
    merged = (json.loads(saved.read_text()) if saved.is_file() and args.only else {}) | results
    saved.write_text(json.dumps(merged, indent=2) + "\n")
    write_markdown(merged)
    if "processes" in results:
        one, *twos = results["processes"]
        for two in twos:
            print(f"2 processes ({two['engine']}) vs 1: {two['tokens_per_s'] / one['tokens_per_s']:.2f}x tokens/s, "
                  f"{two['peak_rss_gib_per_process'] / one['peak_rss_gib_per_process']:.2f}x peak RSS per process")
    print(f"results: {RESULTS / 'scale.json'}  (own usage: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB)")


if __name__ == "__main__":
    main()

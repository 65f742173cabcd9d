"""How right is `ftatlas advise`? Estimated vs measured peak memory and step time, every method, three models.

Models: SmolLM2-135M and two tiny random Llama configs (saved with the SmolLM2 tokenizer). Data: 64 chat rows
of about ``--length`` tokens each (so the data's length percentiles are one number). Each (model, method)
trains ``--steps`` steps (``--tiny-steps`` on the tiny configs)
in a fresh subprocess (``ftatlas.advise.probes.dry_run``), ``--repeats`` times on SmolLM2 (``--tiny-repeats`` on the
tiny configs): the measurement is the median run, the table shows the range beside it.

Memory definition: measured = peak during ``trainer.train()`` minus the process baseline taken right after the
base model is loaded and the heap's free pages are returned to the OS (imports, data, tokenizer and base
weights in the baseline; free heap that loading left would hide the first ~30 MiB of training); estimated =
the advisor's peak minus its own estimate of the loaded base weights. CPU: resident set size; CUDA: max
allocated.
The dry runs preload the allocator the ``ftatlas`` command uses (``ftatlas.allocator``: tcmalloc where installed;
``FTATLAS_ALLOCATOR=system`` measures glibc malloc instead). Time: median seconds of the steps after the first
vs ``StepEstimate.seconds_per_step`` at the measured tokens per step.
Targets: |memory error| <= 15 %, |time error| <= 30 %.

    flock /tmp/ftatlas-heavy.lock python bench/advisor_accuracy.py            # all methods, ~38 min on 2 cores
    python bench/advisor_accuracy.py --models tiny-a --methods lora,full
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TINY = {  # name: LlamaConfig overrides
    "tiny-a": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2),
    "tiny-b": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                   num_key_value_heads=4),
}
WORDS = "apple river stone cloud maple tiger pearl ember frost lemon orbit piano quilt raven sugar tulip".split()


def make_data(path: Path, n: int, length: int, seed: int = 0) -> Path:
    """Rows whose question and answer are ~length/2 tokens each (about one token per word plus template)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(max(1, length // 2 - 8))]
        rows.append({"messages": [{"role": "user", "content": "Repeat: " + " ".join(words)},
                                  {"role": "assistant", "content": " ".join(words)}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_tiny(name: str, out: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftatlas.models.loading import load_tokenizer, resolve_source

    tok = load_tokenizer(resolve_source("smollm2-135m"))
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                      **TINY[name])
    torch.manual_seed(0)
    path = out / name
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def row(model: str, source: str, method: str, data: Path, steps: int, batch: int, refresh: bool,
        prec: str = "auto", repeats: int = 1) -> dict:
    from ftatlas.advise.advisor import candidate_params, data_facts, load_config
    from ftatlas.advise.estimate import Arch, StepSpec, estimate_step
    from ftatlas.advise.probes import device_throughput, dry_run
    from ftatlas.models.device import resolve_precision

    config = load_config(source)
    facts = data_facts(source, str(data), max_length=512)
    precision = resolve_precision(prec, "cpu")
    spec = StepSpec(batch_size=batch, autocast=precision.autocast is not None)
    params = candidate_params(method, config)
    est = estimate_step(config, method, facts.shape, spec, params)
    recipe = {"model": {"name": source}, "data": {"train": str(data), "eval_split": 0.0, "max_length": 512},
              "method": {"name": method, **params}, "train": {"batch_size": batch, "lr": 1e-4, "precision": prec}}
    if method in ("prompt", "ptuning"):  # virtual tokens cannot span a packed row: these train on padded batches
        recipe["train"]["packing"] = "off"
    t0 = time.time()
    runs = [dry_run(recipe, steps=steps) for _ in range(repeats)]
    out = {"model": model, "method": method}
    if any("error" in got for got in runs):
        return out | {"error": next(got["error"] for got in runs if "error" in got)}
    # each run is a fresh process whose heap, and so whose peak, differs from the others' (SmolLM2: by up to ~50 MiB
    # while the whole LM head was cast each step, 2-8 MiB since): the median run is the measurement, the rest kept
    got = sorted(runs, key=lambda g: g["delta_bytes"])[len(runs) // 2]
    meas_s = statistics.median(g["step_seconds"] for g in runs)
    # re-measured (and cached) once per model, alone under the heavy-job lock
    tp = device_throughput("cpu", Arch.from_config(config), batch * facts.shape.p90, spec.autocast, refresh=refresh)
    est_delta = est.peak_bytes - est.base_bytes
    est_time = est.seconds_per_step(tp, int(got["tokens_per_step"]))
    print(f"{model}/{method}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return out | {"est_mib": est_delta / 2**20, "meas_mib": got["delta_bytes"] / 2**20,
                  "meas_mib_runs": [g["delta_bytes"] / 2**20 for g in runs],
                  "meas_s": meas_s,
                  "mem_err": est_delta / got["delta_bytes"] - 1 if got["delta_bytes"] > 0 else float("nan"),
                  "est_s": est_time, "time_err": est_time / meas_s - 1,
                  "tokens_per_step": got["tokens_per_step"], "allocator": got.get("allocator", "?")}


def markdown(rows: list[dict], length: int, batch: int) -> str:
    lines = ["| model | method | est. Δmem MiB | measured Δmem MiB (range) | mem error | est. s/step | measured s/step "
             "| time error |\n|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['method']} | failed: {r['error'][:70]} | | | | | |")
            continue
        runs = r.get("meas_mib_runs", [])
        spread = f" ({min(runs):.0f}–{max(runs):.0f})" if len(runs) > 1 else ""
        lines.append(f"| {r['model']} | {r['method']} | {r['est_mib']:.0f} | {r['meas_mib']:.0f}{spread} | "
                     f"{100 * r['mem_err']:+.0f}% | {r['est_s']:.3f} | {r['meas_s']:.3f} | "
                     f"{100 * r['time_err']:+.0f}% |")
    ok = [r for r in rows if "error" not in r]
    if ok:
        mem_in = sum(abs(r["mem_err"]) <= 0.15 for r in ok)
        time_in = sum(abs(r["time_err"]) <= 0.30 for r in ok)
        lines.append(f"\n{len(ok)} runs (rows of ~{length} tokens, batch {batch}): memory within ±15% in {mem_in}, "
                     f"time within ±30% in {time_in}; median |mem error| "
                     f"{100 * sorted(abs(r['mem_err']) for r in ok)[len(ok) // 2]:.0f}%, median |time error| "
                     f"{100 * sorted(abs(r['time_err']) for r in ok)[len(ok) // 2]:.0f}%. Heap allocator "
                     f"{', '.join(sorted({r.get('allocator', '?') for r in ok}))}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="smollm2-135m,tiny-a,tiny-b")
    ap.add_argument("--methods", default="", help="comma-separated; default: every registered method but none")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tiny-steps", type=int, default=16, help="steps for the tiny configs (their 0.1-0.5 s steps "
                    "need more samples for a stable median on a shared machine)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh-process runs per row on SmolLM2; the median is "
                    "the measurement, the range is shown beside it")
    ap.add_argument("--tiny-repeats", type=int, default=3, help="runs per row on the tiny configs (their step "
                    "times moved by up to 27%% between single runs)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--precision", default="auto", help="train.precision: auto (default, what users get: bf16 "
                    "autocast on this CPU), bf16 or fp32")
    args = ap.parse_args()
    from ftatlas.methods import METHODS

    methods = [m for m in args.methods.split(",") if m] or [m for m in METHODS.names() if m != "none"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "rows.jsonl", 64, args.length)
        for model in args.models.split(","):
            source = model if model not in TINY else str(make_tiny(model, Path(tmp)))
            for i, m in enumerate(methods):
                steps = args.tiny_steps if model in TINY else args.steps
                repeats = args.tiny_repeats if model in TINY else args.repeats
                rows.append(row(model, source, m, data, steps, args.batch, i == 0, args.precision, repeats))
    table = markdown(rows, args.length, args.batch) + f" Precision {args.precision}."
    print(table)
    if not args.methods and args.models == ap.get_default("models") and args.precision == "auto":
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "advisor_accuracy.md").write_text(table + "\n")
        (RESULTS / "advisor_accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

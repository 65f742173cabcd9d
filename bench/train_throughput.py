"""Side by side: TRL SFTTrainer + PEFT (their defaults) vs ftatlas SFT on SmolLM2-135M, same tokens, same order.

Data: a deterministic mixed-length chat set (``chat_rows``: rendered lengths ~30 to ~1000 tokens,
log-normal like real instruction data, answers 60-80% of each row), tokenized once by ftatlas'
templating; both trainers get exactly those token ids and loss masks (TRL as a pre-tokenized dataset
with ``labels``), the same batch size, learning rate, schedule and sequential order, so step k of
each side sees the same rows. Everything else is each side's default: TRL pads every batch,
checkpoints activations and runs its fused LM head with entropy/accuracy metrics; ftatlas packs
padding-free with per-sequence attention and its chunked loss, checkpoints activations too (its default,
like TRL's) and (LoRA) keeps the frozen base weights in bf16. LoRA is r=16, alpha=32, all-linear,
dropout 0 (PEFT's default) on both sides.

Each (side, repetition) runs in a fresh subprocess, alternating TRL/ftatlas, so the peak RSS of one
side is not inherited by the other (one process cannot separate two peaks); both sides run on the heap
allocator the ``ftatlas`` command uses (``ftatlas.allocator``: tcmalloc where installed). Per-step wall time and
non-padding tokens are recorded by a callback; tokens/s is the median over the steps after warm-up
of all repetitions. TFLOP/s counts 4*N (LoRA: forward + input-gradient backward) or 6*N (full) per
token, N = all parameters (tied head once), plus causal attention 2*L*d*n^2 (forward; x2 LoRA, x3
full backward included) per sequence of n tokens, and is compared with a bf16 ``torch.mm`` ceiling
measured at the start of the same run.

    flock /tmp/ftatlas-heavy.lock python bench/train_throughput.py             # lora and full, ~10 min
    python bench/train_throughput.py --modes lora --reps 1 --set gradient_checkpointing=false   # an ablation
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORDS = ("the model data train token loss batch layer value graph query answer system record field table index "
         "memory cache vector matrix kernel thread signal window buffer stream packet router client server "
         "request update commit branch merge report budget market price order invoice customer product").split()


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` messages rows, ~30 to ~1000 tokens rendered (log-normal, median ~250), deterministic."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        total = int(min(1000, max(30, rng.lognormvariate(5.5, 0.8))))
        words = max(4, total - 16)  # one token per word (common words, leading space); template ~16 tokens
        ask = max(2, int(words * rng.uniform(0.2, 0.4)))
        say = lambda k: " ".join(rng.choice(WORDS) for _ in range(k)) + "."  # noqa: E731
        rows.append({"messages": [{"role": "user", "content": say(ask)},
                                  {"role": "assistant", "content": say(words - ask)}]})
    return rows


def encoded(n: int, max_length: int = 1024) -> tuple[list[dict], list, object]:
    """(token rows as TRL gets them, the same rows as ftatlas conversations, tokenizer)."""
    from ftatlas.data.records import Conversation, Message
    from ftatlas.data.templating import encode_all
    from ftatlas.models.loading import load_tokenizer, resolve_source

    tok = load_tokenizer(resolve_source("smollm2-135m"))
    convs = [Conversation([Message(m["role"], m["content"]) for m in r["messages"]]) for r in chat_rows(n)]
    enc, stats = encode_all(tok, convs, max_length, "assistant")
    assert len(enc) == n and not stats.truncated, "generator rows must fit max_length untruncated"
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in enc], convs, tok


# ----------------------------------------------------------------------------------------------- worker side


def step_recorder():  # noqa: ANN201
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def __init__(self) -> None:
            self.rows: list[dict] = []

        def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
            self._t, self._tok = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
            self.rows.append({"s": time.perf_counter() - self._t, "tokens": state.num_input_tokens_seen - self._tok})

        def on_log(self, args, state, control, logs=None, **kw):  # noqa: ANN001
            if logs and "loss" in logs and self.rows:
                self.rows[-1]["loss"] = float(logs["loss"])

    return Steps()


def trl_trainer(model, tok, data: list[dict], mode: str, a: argparse.Namespace, out: str):  # noqa: ANN001, ANN201
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    cfg = SFTConfig(output_dir=out, max_steps=a.warmup + a.steps, per_device_train_batch_size=a.batch,
                    learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1,
                    report_to="none", save_strategy="no", use_cpu=True, train_sampling_strategy="sequential",
                    include_num_input_tokens_seen="non_padding", disable_tqdm=True)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    peft = lora if mode == "lora" else None
    return SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(data), processing_class=tok,
                      peft_config=peft)


def ftatlas_trainer(model, tok, convs: list, mode: str, a: argparse.Namespace, out: str):  # noqa: ANN001, ANN201
    from ftatlas.methods import METHODS
    from ftatlas.models.device import resolve_precision
    from ftatlas.objectives import OBJECTIVES, TrainContext
    from ftatlas.resolve import build_recipe
    from ftatlas.runs import RunDir

    method = {"name": "lora", "r": 16, "alpha": 32, "dropout": 0.0} if mode == "lora" else {"name": "full"}
    train = {"max_steps": a.warmup + a.steps, "batch_size": a.batch, "lr": a.lr, "scheduler": "constant",
             "warmup": 0, "log_every": 1}
    recipe = build_recipe({"data": {"builtin": "contacts", "max_length": 1024}, "method": method, "train": train,
                           "output": {"dir": out, "name": "ft", "overwrite": True}}, a.set)
    model = METHODS.get(recipe.method.name)().apply(model, recipe.method_params())
    trainer = OBJECTIVES.get("sft")().build(TrainContext(
        recipe, model, tok, convs, [], RunDir.create(out, "ft", True), "cpu",
        resolve_precision(recipe.train.precision, "cpu"), False))
    trainer.args.train_sampling_strategy = "sequential"  # same order as the TRL side (the data is pre-shuffled)
    return trainer


def worker(a: argparse.Namespace) -> None:
    import tempfile

    import torch

    from ftatlas.models.loading import load_model

    torch.manual_seed(0)
    data, convs, tok = encoded(a.batch * (a.warmup + a.steps))
    model = load_model("smollm2-135m").model
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as out:
        build = trl_trainer if a.worker == "trl" else ftatlas_trainer
        trainer = build(model, tok, data if a.worker == "trl" else convs, a.mode, a, out)
        steps = step_recorder()
        trainer.add_callback(steps)
        trainer.train()
    print(json.dumps({"side": a.worker, "mode": a.mode, "steps": steps.rows, "n_params": n_params,
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "loaded_rss_kib": rss_loaded}))


# ----------------------------------------------------------------------------------------------- parent side


def mm_ceiling(n: int = 2048, reps: int = 10) -> float:
    """bf16 ``torch.mm`` TFLOP/s on this machine (best of ``reps``)."""
    import torch

    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(reps))
    return 2 * n**3 / best / 1e12


def _timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_side(side: str, mode: str, a: argparse.Namespace, sets: list[str] | None = None) -> dict:
    from ftatlas.allocator import preload_env  # both sides on the allocator the ftatlas command uses

    sets = a.set if sets is None else sets
    cmd = [sys.executable, __file__, "--worker", side, "--modes", mode, "--steps", str(a.steps), "--warmup",
           str(a.warmup), "--batch", str(a.batch), "--lr", str(a.lr), *[x for s in sets for x in ("--set", s)]]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=a.timeout, env=preload_env())
    if proc.returncode:
        raise RuntimeError(f"{side}/{mode} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {side:8s} {mode}: {time.perf_counter() - t:5.0f}s wall, peak RSS "
          f"{res['peak_rss_kib'] / 2**20:.2f} GiB, step s {[round(s['s'], 1) for s in res['steps']]}", flush=True)
    return res


def attention_flops(lengths: list[int], layers: int = 30, hidden: int = 576) -> float:
    """Causal attention forward FLOPs of these sequences: 2 matmuls x 2 FLOP x n^2/2 x d, per layer."""
    return sum(2.0 * layers * hidden * n * n for n in lengths)


def summarise(mode: str, runs: dict[str, list[dict]], a: argparse.Namespace, ceiling: float) -> dict:
    data, _, _ = encoded(a.batch * (a.warmup + a.steps))
    lengths = [len(r["input_ids"]) for r in data]
    out = {}
    for side, reps in runs.items():
        measured = [(i, s) for r in reps for i, s in enumerate(r["steps"]) if i >= a.warmup]
        per_step = [s["tokens"] / s["s"] for _, s in measured]
        n = reps[0]["n_params"]
        k, attn_k = (4, 2) if mode == "lora" else (6, 3)
        flops = [(k * n * s["tokens"] + attn_k * attention_flops(lengths[i * a.batch:(i + 1) * a.batch])) / s["s"]
                 for i, s in measured]
        last = [r["steps"][-1].get("loss") for r in reps]
        out[side] = {"tokens_per_s": statistics.median(per_step), "tflops": statistics.median(flops) / 1e12,
                     "peak_rss_gib": statistics.median(r["peak_rss_kib"] for r in reps) / 2**20,
                     "loaded_rss_gib": statistics.median(r["loaded_rss_kib"] for r in reps) / 2**20,
                     "final_loss": statistics.mean(x for x in last if x is not None),
                     "mean_loss": statistics.mean(s.get("loss", float("nan")) for r in reps for s in r["steps"]),
                     "tokens_per_step": statistics.mean(s["tokens"] for _, s in measured)}
    t, f = out["trl"], out["ftatlas"]
    out["ratio"] = {"tokens_per_s": f["tokens_per_s"] / t["tokens_per_s"],
                    "peak_rss": f["peak_rss_gib"] / t["peak_rss_gib"],
                    "loss_delta": abs(f["final_loss"] - t["final_loss"]) / t["final_loss"],
                    "ceiling_tflops": ceiling}
    return out


def markdown(results: dict, a: argparse.Namespace, ceiling: float) -> str:
    lines = [f"bf16 torch.mm ceiling: {ceiling:.2f} TFLOP/s; batch {a.batch}, {a.warmup} warm-up + {a.steps} measured "
             f"steps x {a.reps} repetitions per side" + (f"; ftatlas --set {' '.join(a.set)}" if a.set else ""), "",
             "| mode | side | non-pad tokens/s | TFLOP/s (% of mm) | peak RSS | loss after last step |",
             "|---|---|---|---|---|---|"]
    for mode, r in results.items():
        for side in ("trl", "ftatlas"):
            s = r[side]
            label = ("TRL+PEFT" if mode == "lora" else "TRL") if side == "trl" else "ftatlas"
            lines.append(f"| {mode} | {label} | {s['tokens_per_s']:,.0f} | "
                         f"{s['tflops']:.3f} ({100 * s['tflops'] / ceiling:.1f}%) | {s['peak_rss_gib']:.2f} GiB | "
                         f"{s['final_loss']:.4f} |")
        x = r["ratio"]
        lines.append(f"| {mode} | **ratio** | **{x['tokens_per_s']:.2f}x** (target >= 2.0) | | "
                     f"**{x['peak_rss']:.2f}x** (target <= 0.6) | **{100 * x['loss_delta']:.2f}%** (target <= 1%) |")
    return "\n".join(lines)


ABLATIONS = {"ftatlas default": [], "packing=off": ["train.packing=off"],
             "packed_attention=mask (transformers' block-diagonal sdpa mask)": ["train.packed_attention=mask"],
             "chunked_loss=false": ["train.chunked_loss=false"],
             "frozen_half=false (frozen base fp32, cast every step)": ["train.frozen_half=false"],
             "gradient_checkpointing=false (activations kept, not recomputed)": ["train.gradient_checkpointing=false"],
             "pad_multiple=1 (every row length a new kernel shape)": ["train.pad_multiple=1"],
             "compile=true": ["train.compile=true"]}


def ablate(a: argparse.Namespace, mode: str) -> None:
    """Each fast-path piece switched off (or an option on) alone, ftatlas side only, in fresh subprocesses."""
    rows = []
    only = [w for w in a.only.split(",") if w]
    for name, sets in ABLATIONS.items():
        if only and name != "ftatlas default" and not any(name.startswith(w) for w in only):
            continue
        try:
            r = run_side("ftatlas", mode, a, sets)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"  {name}: {str(e).splitlines()[0][:200]}", flush=True)
            continue
        measured = r["steps"][a.warmup:]
        rows.append((name, statistics.median(s["tokens"] / s["s"] for s in measured), r["peak_rss_kib"] / 2**20,
                     r["steps"][-1].get("loss")))
    base = next((t for n, t, _, _ in rows if n == "ftatlas default"), float("nan"))  # nan: default run failed
    lines = [f"ablation ({mode}, batch {a.batch}, {a.warmup} warm-up + {a.steps} measured steps, one run each)", "",
             "| ftatlas variant | non-pad tokens/s | vs default | peak RSS | last loss |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {t:,.0f} | {t / base:.2f}x | {m:.2f} GiB | {x:.4f} |" for n, t, m, x in rows]
    md = "\n".join(lines)
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"train_ablation_{mode}.md").write_text(md + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default="lora,full")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--set", action="append", default=[], help="ftatlas recipe override, e.g. packing=off")
    p.add_argument("--timeout", type=int, default=420, help="seconds per subprocess")
    p.add_argument("--ablate", action="store_true", help="ftatlas variants only (first mode), no TRL")
    p.add_argument("--only", default="", help="with --ablate: variants whose names start with these "
                   "(comma-separated; the default always runs), e.g. pad_multiple,packing")
    p.add_argument("--worker", choices=["trl", "ftatlas"], help=argparse.SUPPRESS)
    a = p.parse_args()
    a.set = [s if s.startswith("train.") else f"train.{s}" for s in a.set]
    if a.worker:
        a.mode = a.modes
        return worker(a)
    if a.ablate:
        return ablate(a, a.modes.split(",")[0])
    ceiling = mm_ceiling()
    print(f"bf16 torch.mm ceiling {ceiling:.2f} TFLOP/s", flush=True)
    results = {}
    for mode in a.modes.split(","):
        runs: dict[str, list[dict]] = {"trl": [], "ftatlas": []}
        for rep in range(a.reps):
            for side in (("trl", "ftatlas") if rep % 2 == 0 else ("ftatlas", "trl")):
                runs[side].append(run_side(side, mode, a))
        results[mode] = summarise(mode, runs, a, ceiling)
    md = markdown(results, a, ceiling)
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "" if not a.set else "-" + "-".join(s.removeprefix("train.").replace("=", "_") for s in a.set)
    (RESULTS / f"train_throughput{tag}.md").write_text(md + "\n")
    (RESULTS / f"train_throughput{tag}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

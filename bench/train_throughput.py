"""Side by side on SmolLM2-135M, same tokens: TRL SFTTrainer (+ PEFT for LoRA) with its defaults, TRL configured
as an expert would on this CPU (with and without gradient checkpointing), and ftatlas SFT with its defaults.

Data: a deterministic mixed-length chat set (``chat_rows``: rendered lengths ~30 to ~1000 tokens,
log-normal like real instruction data, answers 60-80% of each row), tokenized once by ftatlas'
templating; every side gets exactly those token ids and loss masks (TRL as a pre-tokenized dataset
with ``labels``), the same learning rate and schedule.

* ``trl``: TRL's defaults: padded batches of ``--batch`` rows in order, gradient checkpointing on, bf16, its
  fused LM head with entropy/accuracy metrics; so step k sees the same rows as ftatlas' step k.
* ``trl-expert-gc`` / ``trl-expert``: ``packing=True`` with ``packing_strategy="bfd"`` (best-fit decreasing,
  padding-free rows with per-sequence position ids) to ``max_length`` 1024 (the longest row), ``bf16``,
  ``use_cpu``, checkpointing on / off, and as many packed rows per step as carry the tokens of one ftatlas
  step (``expert_batch``). Packing regroups rows, so its steps hold other rows than the other sides' steps:
  compare its loss by the mean over steps, not step by step.
* ``ftatlas``: its defaults: padding-free packing with per-sequence attention, the chunked loss, the bf16
  frozen base (LoRA) and ``gradient_checkpointing: auto`` decided from memory as ``ftatlas train`` does
  (``checkpointing_plan``; off on a machine with GiBs free). LoRA is r=16, alpha=32, all-linear on every side;
  dropout is each side's default (0 on both).

Each (side, repetition) runs in a fresh subprocess, so the peak RSS of one side is not inherited by the
other (one process cannot separate two peaks); all sides run on the heap allocator the ``ftatlas``
command uses (``ftatlas.allocator``: tcmalloc where installed). Per-step wall time and non-padding tokens
are recorded by a callback; tokens/s is the median over the steps after warm-up of all repetitions.
TFLOP/s counts 4*N (LoRA: forward + input-gradient backward) or 6*N (full) per token, N = all parameters
(tied head once), plus causal attention 2*L*d*n^2 (forward; x2 LoRA, x3 full backward included) per
sequence of n tokens, and is compared with a bf16 ``torch.mm`` ceiling measured at the start of the same run
(not for the packed expert sides, whose per-step sequences are not tracked). Targets (issue #19): ftatlas
>= 1.3x the faster TRL expert in non-pad tokens/s at equal loss; peak RSS <= 0.6x TRL's defaults.

    flock /tmp/ftatlas-heavy.lock python bench/train_throughput.py --modes lora --reps 1   # 4 sides, ~7 min
    flock /tmp/ftatlas-heavy.lock python bench/train_throughput.py --modes full --reps 1   # adds to the json
    python bench/train_throughput.py --modes lora --reps 1 --set gradient_checkpointing=true   # an ablation
    python bench/train_throughput.py --ablate --modes lora        # ftatlas variants, one piece off at a time
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
    """TRL's defaults (padded batches, checkpointing on, bf16); ``trl-expert*``: what an expert sets on this CPU:
    best-fit-decreasing packing (padding-free, per-sequence positions) to the data's longest row, bf16, use_cpu,
    checkpointing on (``trl-expert-gc``) or off (``trl-expert``), and as many packed rows per step as give the
    tokens of ftatlas' step (``expert_batch``)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    fields = dict(per_device_train_batch_size=a.batch)
    if a.worker.startswith("trl-expert"):
        fields = dict(packing=True, packing_strategy="bfd", max_length=EXPERT_MAX_LENGTH, bf16=True,
                      gradient_checkpointing=a.worker == "trl-expert-gc",
                      per_device_train_batch_size=expert_batch(data, a))
    cfg = SFTConfig(output_dir=out, max_steps=a.warmup + a.steps, learning_rate=a.lr, lr_scheduler_type="constant",
                    warmup_steps=0, logging_steps=1, report_to="none", save_strategy="no", use_cpu=True,
                    train_sampling_strategy="sequential", include_num_input_tokens_seen="non_padding",
                    disable_tqdm=True, **fields)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    peft = lora if mode == "lora" else None
    return SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(data), processing_class=tok,
                      peft_config=peft)


EXPERT_MAX_LENGTH = 1024  # the longest rendered row fits: packing never splits a sequence


def expert_batch(data: list[dict], a: argparse.Namespace) -> int:
    """Packed rows per step for the TRL expert side: as many as carry the tokens of one ftatlas step (batch
    rows), measured by packing the data the way TRL will (its own ``pack_dataset``, best-fit decreasing)."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    steps = a.warmup + a.steps
    step_tokens = sum(len(r["input_ids"]) for r in data[: a.batch * steps]) / steps
    packed = pack_dataset(Dataset.from_list(data), EXPERT_MAX_LENGTH, "bfd")
    per_row = sum(len(r) for r in packed["input_ids"]) / len(packed)
    return max(1, round(step_tokens / per_row))


def ftatlas_trainer(model, tok, convs: list, mode: str, a: argparse.Namespace, out: str):  # noqa: ANN001, ANN201
    from ftatlas.methods import METHODS
    from ftatlas.models.device import resolve_precision
    from ftatlas.objectives import OBJECTIVES, TrainContext
    from ftatlas.resolve import build_recipe
    from ftatlas.runs import RunDir

    method = {"name": "lora", "r": 16, "alpha": 32} if mode == "lora" else {"name": "full"}  # dropout: ours
    train = {"max_steps": a.warmup + a.steps, "batch_size": a.batch, "lr": a.lr, "scheduler": "constant",
             "warmup": 0, "log_every": 1}
    recipe = build_recipe({"data": {"builtin": "contacts", "max_length": 1024}, "method": method, "train": train,
                           "output": {"dir": out, "name": "ft", "overwrite": True}}, a.set)
    precision = resolve_precision(recipe.train.precision, "cpu")
    decision = checkpointing_plan(recipe, model, tok, convs, precision.autocast is not None)
    model = METHODS.get(recipe.method.name)().apply(model, recipe.method_params())
    trainer = OBJECTIVES.get("sft")().build(TrainContext(
        recipe, model, tok, convs, [], RunDir.create(out, "ft", True), "cpu", precision, False,
        checkpointing=decision.on))
    trainer.ftatlas_checkpointing = decision.reason
    trainer.args.train_sampling_strategy = "sequential"  # same order as the TRL side (the data is pre-shuffled)
    return trainer


def checkpointing_plan(recipe, model, tok, convs: list, autocast: bool):  # noqa: ANN001, ANN201
    """``gradient_checkpointing: auto`` decided as ``ftatlas train`` decides it (pipeline.checkpointing_decision):
    from the memory estimate of these rows against the memory available."""
    from ftatlas.advise.checkpointing import plan_checkpointing
    from ftatlas.data.templating import encode_all

    enc, stats = encode_all(tok, convs, recipe.data.max_length, recipe.data.train_on)
    return plan_checkpointing(recipe, model.config, [len(e.input_ids) for e in enc], stats.loss_tokens, "cpu",
                              autocast)


def worker(a: argparse.Namespace) -> None:
    import tempfile

    import torch

    from ftatlas.models.loading import load_model

    torch.manual_seed(0)
    n = a.batch * (a.warmup + a.steps)
    data, convs, tok = encoded(2 * n if a.worker.startswith("trl-expert") else n)  # packing: enough rows to fill
    model = load_model("smollm2-135m").model
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as out:
        build = ftatlas_trainer if a.worker == "ftatlas" else trl_trainer
        trainer = build(model, tok, convs if a.worker == "ftatlas" else data, a.mode, a, out)
        steps = step_recorder()
        trainer.add_callback(steps)
        trainer.train()
    print(json.dumps({"side": a.worker, "mode": a.mode, "steps": steps.rows, "n_params": n_params,
                      "checkpointing": getattr(trainer, "ftatlas_checkpointing", None)
                      or ("on" if trainer.args.gradient_checkpointing else "off"),
                      "batch": trainer.args.per_device_train_batch_size,
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


SIDES = ("trl", "trl-expert-gc", "trl-expert", "ftatlas")
LABELS = {"trl": "TRL defaults", "trl-expert-gc": "TRL expert (bfd packing, bf16, checkpointing on)",
          "trl-expert": "TRL expert (bfd packing, bf16, checkpointing off)", "ftatlas": "ftatlas defaults"}


def summarise(mode: str, runs: dict[str, list[dict]], a: argparse.Namespace, ceiling: float) -> dict:
    data, _, _ = encoded(a.batch * (a.warmup + a.steps))
    lengths = [len(r["input_ids"]) for r in data]
    out: dict = {}
    for side, reps in runs.items():
        measured = [(i, s) for r in reps for i, s in enumerate(r["steps"]) if i >= a.warmup]
        per_step = [s["tokens"] / s["s"] for _, s in measured]
        n = reps[0]["n_params"]
        k, attn_k = (4, 2) if mode == "lora" else (6, 3)
        # packed TRL steps hold other rows than step i of the row order: their attention work is not known here
        flops = None if side.startswith("trl-expert") else statistics.median(
            (k * n * s["tokens"] + attn_k * attention_flops(lengths[i * a.batch:(i + 1) * a.batch])) / s["s"]
            for i, s in measured) / 1e12
        last = [r["steps"][-1].get("loss") for r in reps]
        out[side] = {"tokens_per_s": statistics.median(per_step), "tflops": flops,
                     "peak_rss_gib": statistics.median(r["peak_rss_kib"] for r in reps) / 2**20,
                     "loaded_rss_gib": statistics.median(r["loaded_rss_kib"] for r in reps) / 2**20,
                     "final_loss": statistics.mean(x for x in last if x is not None),
                     "mean_loss": statistics.mean(s["loss"] for r in reps for s in r["steps"] if "loss" in s),
                     "tokens_per_step": statistics.mean(s["tokens"] for _, s in measured),
                     "batch": reps[0].get("batch"), "checkpointing": reps[0].get("checkpointing")}
    f = out["ftatlas"]
    ratio: dict = {"ceiling_tflops": ceiling}
    if "trl" in out:
        t = out["trl"]
        ratio |= {"tokens_per_s": f["tokens_per_s"] / t["tokens_per_s"],
                  "peak_rss": f["peak_rss_gib"] / t["peak_rss_gib"],
                  "loss_delta": abs(f["final_loss"] - t["final_loss"]) / t["final_loss"]}
    experts = [s for s in ("trl-expert-gc", "trl-expert") if s in out]
    if experts:
        best = max(experts, key=lambda s: out[s]["tokens_per_s"])
        ratio |= {"expert_best": best, "tokens_per_s_vs_expert": f["tokens_per_s"] / out[best]["tokens_per_s"],
                  "peak_rss_vs_expert": f["peak_rss_gib"] / out[best]["peak_rss_gib"],
                  "mean_loss_delta_vs_expert": abs(f["mean_loss"] - out[best]["mean_loss"]) / out[best]["mean_loss"]}
    out["ratio"] = ratio
    return out


def markdown(results: dict, a: argparse.Namespace, ceiling: float) -> str:
    lines = [f"bf16 torch.mm ceiling: {ceiling:.2f} TFLOP/s; {a.warmup} warm-up + {a.steps} measured steps x {a.reps} "
             "repetition(s) per side" + (f"; ftatlas --set {' '.join(a.set)}" if a.set else ""), "",
             "| mode | side | rows/step | tokens/step | checkpointing | non-pad tokens/s | TFLOP/s (% of mm) "
             "| peak RSS | loss after last step | mean loss over steps |", "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, r in results.items():
        for side in SIDES:
            if side not in r:
                continue
            s = r[side]
            fl = "-" if s["tflops"] is None else f"{s['tflops']:.3f} ({100 * s['tflops'] / ceiling:.1f}%)"
            rows = f"{s.get('batch', '?')} packed" if side.startswith("trl-expert") else s.get("batch", "?")
            gc = str(s.get("checkpointing", "?")).split(":")[0]  # results of older runs may lack these fields
            mean = f"{s['mean_loss']:.4f}" if "mean_loss" in s else "-"
            lines.append(f"| {mode} | {LABELS[side]} | {rows} | {s['tokens_per_step']:,.0f} | {gc} | "
                         f"{s['tokens_per_s']:,.0f} | {fl} | {s['peak_rss_gib']:.2f} GiB | {s['final_loss']:.4f} | "
                         f"{mean} |")
        x = r["ratio"]
        if "tokens_per_s" in x:
            lines.append(f"| {mode} | **ftatlas / TRL defaults** | | | | **{x['tokens_per_s']:.2f}x** | | "
                         f"**{x['peak_rss']:.2f}x** (target <= 0.6) | **{100 * x['loss_delta']:.2f}%** | |")
        if "tokens_per_s_vs_expert" in x:
            lines.append(f"| {mode} | **ftatlas / fastest TRL expert ({x['expert_best']})** | | | | "
                         f"**{x['tokens_per_s_vs_expert']:.2f}x** (target >= 1.3) | | "
                         f"**{x['peak_rss_vs_expert']:.2f}x** | | {100 * x['mean_loss_delta_vs_expert']:.2f}% |")
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
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, of {', '.join(SIDES)}")
    p.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
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
        sides = [s for s in SIDES if s in a.sides.split(",")]
        runs: dict[str, list[dict]] = {s: [] for s in sides}
        for rep in range(a.reps):
            for side in (sides if rep % 2 == 0 else sides[::-1]):
                runs[side].append(run_side(side, mode, a))
        results[mode] = summarise(mode, runs, a, ceiling)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = "" if not a.set else "-" + "-".join(s.removeprefix("train.").replace("=", "_") for s in a.set)
    out = RESULTS / f"train_throughput{tag}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}  # modes run in separate calls add up
    results = {m: r for m, r in (previous | results).items() if "ftatlas" in r and "ratio" in r}
    md = markdown(results, a, ceiling)
    print(md)
    (RESULTS / f"train_throughput{tag}.md").write_text(md + "\n")
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

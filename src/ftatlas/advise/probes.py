"""Measurements for the advisor: the device's matmul rate and memory bandwidth, and a dry run of real steps.

``device_throughput`` times a matmul at the model's own shapes (tokens x hidden @ hidden x intermediate, in
the autocast dtype) and a large tensor copy, and caches both per device in ``~/.cache/ftatlas/advise``.
Without the device at hand (``--device cuda`` on a CPU machine) it falls back to a table of known GPUs.

``dry_run`` trains a recipe for a few optimizer steps in a fresh subprocess and reports:

* ``delta_bytes``: peak memory during training minus the baseline taken right after the base model is
  loaded, each weight read once and the heap's free pages returned to the OS (imports, tokenizer, data and
  the resident base weights are in the baseline; the method's own weights, gradients, optimizer states,
  activations and loss buffers are in the delta). Without the release, the ~30 MiB of free heap that loading
  leaves behind (tcmalloc; the same on a 2-layer model as on SmolLM2) sat in the baseline and the first
  allocations drew on it unseen, so every delta read ~30 MiB low. CPU: resident set size sampled every 20 ms
  and the kernel's high-water mark; CUDA: ``torch.cuda.max_memory_allocated``.
* ``step_seconds``: median wall time of the steps after the first (the first pays one-off setup).
* ``tokens_per_s``: training tokens seen / training seconds.
"""

from __future__ import annotations

import gc
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from ftatlas.advise.estimate import Arch, Throughput
from ftatlas.allocator import active, preload_env, release_free_memory
from ftatlas.runs import atomic_write

# bf16 dense matmul FLOP/s and memory bandwidth of common GPUs, for advice about a machine we are not on.
KNOWN_GPUS = {  # name: (min memory GB, FLOP/s, bytes/s)
    "RTX 3090 (24 GB)": (24, 71e12, 936e9),
    "RTX 4090 (24 GB)": (24, 165e12, 1008e9),
    "V100 (32 GB)": (32, 125e12, 900e9),
    "A100 (40/80 GB)": (40, 312e12, 1555e9),
    "H100 (80 GB)": (80, 989e12, 3350e9),
}


# Real training runs slower than the matmul ceiling (elementwise ops, casts, per-sequence attention, the Python
# Trainer loop): (matmul slowdown, seconds of Trainer overhead per step, elementwise slowdown, loss slowdown),
# fitted by non-negative least squares on relative error over one bench/advisor_accuracy.py run on this
# project's 2-core AMX CPU with tcmalloc, train.pad_multiple 64 and the in-place chunked loss (42 rows: 14 methods
# x SmolLM2-135M, tiny-a, tiny-b; bf16 autocast, 8 x 128 tokens; 42 rows within 30% in sample, 39 on the next
# run; the README's table is a later run, out of sample). Step times of the same row varied by more than 15%
# between runs on this shared machine. CUDA: assumed (the matmul at about half its rate), not yet measured.
CALIBRATION = {"cpu": (1.111, 0.012, 6.063, 25.234), "cuda": (2.0, 0.01, 2.0, 4.0)}


def cache_file() -> Path:
    from ftatlas.models.loading import cache_root

    return cache_root() / "advise" / "throughput.json"


def _device_key(device: str, dtype: torch.dtype, m: int, k: int, n: int) -> str:
    name = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or platform.machine())
    return f"v5|{device}|{name}|{torch.get_num_threads()}|{dtype}|{m}x{k}x{n}"


def _time(fn: Any, device: str, windows: int = 3, min_seconds: float = 0.2) -> float:
    """Seconds per call of ``fn``: the fastest of ``windows`` timing windows of at least ``min_seconds`` each.

    Anything else running on a shared machine only ever slows a window down, so the fastest is the device's own
    rate; one window's mean moved by +-4% (matmul) and +-7% (copy bandwidth) between back-to-back measurements."""
    fn()
    fn()
    best = float("inf")
    for _ in range(windows):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn()
            reps += 1
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                break
        best = min(best, dt / reps)
    return best


def tabled_gpu(memory_gb: float | None) -> tuple[str, Throughput]:
    """The smallest known GPU with at least ``memory_gb`` (A100 when unknown)."""
    fits = [k for k, v in KNOWN_GPUS.items() if memory_gb is not None and v[0] >= memory_gb - 0.5]
    name = min(fits, key=lambda k: KNOWN_GPUS[k][0]) if fits else "A100 (40/80 GB)"
    _gb, flops, bw = KNOWN_GPUS[name]
    return name, Throughput(flops, bw, f"tabled {name} (dense bf16 peak)", *CALIBRATION["cuda"])


def device_throughput(device: str, arch: Arch, tokens: int, autocast: bool, memory_gb: float | None = None,
                      refresh: bool = False) -> Throughput:
    """Matmul FLOP/s at the model's shapes and copy bandwidth on ``device`` (cached; ``refresh`` re-measures);
    tabled if the device is absent."""
    if device == "cuda" and not torch.cuda.is_available():
        return tabled_gpu(memory_gb)[1]
    dtype = torch.bfloat16 if autocast else torch.float32
    m = max(64, min(tokens, 4096))
    key = _device_key(device, dtype, m, arch.hidden, arch.intermediate)
    path = cache_file()
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):  # unreadable: measured again and rewritten whole
        cache = {}
    if key in cache and not refresh:
        return Throughput(*cache[key], *CALIBRATION.get(device, (1.0, 0.0, 1.0, 1.0)))
    a = torch.randn(m, arch.hidden, device=device, dtype=dtype)
    b = torch.randn(arch.hidden, arch.intermediate, device=device, dtype=dtype)
    flops = 2 * m * arch.hidden * arch.intermediate / _time(lambda: a @ b, device)
    big = torch.empty(32 * 2**20, device=device, dtype=torch.float32)  # 128 MiB: past the caches
    dst = torch.empty_like(big)
    bandwidth = 2 * big.numel() * 4 / _time(lambda: dst.copy_(big), device)
    result = Throughput(flops, bandwidth, f"measured on {device} ({str(dtype).removeprefix('torch.')} matmul)",
                        *CALIBRATION.get(device, (1.0, 0.0, 1.0, 1.0)))
    cache[key] = [result.flops, result.bandwidth, result.source]
    atomic_write(path, json.dumps(cache, indent=1))  # processes measuring at once never leave half a file
    return result


class StepTimer(TrainerCallback):
    """Wall time of each optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._t = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.times.append(time.perf_counter() - self._t)


def _baseline(device: str) -> int:
    from ftatlas.phase_stats import rss_bytes

    gc.collect()
    release_free_memory()  # free heap left by loading would be a hidden credit the first allocations draw on
    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated()
    return rss_bytes()


def run_steps(recipe_data: dict[str, Any]) -> dict[str, Any]:
    """Train ``recipe_data`` for its ``train.max_steps`` in this process; memory delta and step times."""
    from ftatlas.objectives import TrainContext
    from ftatlas.phase_stats import Measure
    from ftatlas.pipeline import prepare
    from ftatlas.resolve import build_recipe

    recipe = build_recipe(recipe_data, source="dry run")
    session = prepare(recipe, progress=False)
    with torch.no_grad():  # page in weights that loading left memory-mapped, so the baseline holds them
        for p in session.loaded.model.parameters():
            p.sum()
    base = _baseline(session.device)
    model = recipe.axes.method.entry().apply(session.loaded.model, recipe.method_params())
    objective = recipe.axes.objective.entry()
    trainer = objective.build(TrainContext(recipe, model, session.loaded.tokenizer, session.splits.train,
                                           session.splits.eval, session.run, session.device, session.precision,
                                           False))
    timer = StepTimer()
    trainer.add_callback(timer)
    with Measure(session.device) as m:
        trainer.train()
    steps = max(len(timer.times), 1)
    tokens = int(trainer.state.num_input_tokens_seen)
    later = timer.times[1:] or timer.times
    return {"method": recipe.method.name, "baseline_bytes": base, "peak_bytes": m.stats.peak_bytes,
            "delta_bytes": m.stats.peak_bytes - base, "kind": m.stats.kind, "steps": steps,
            "step_seconds": statistics.median(later) if later else 0.0, "tokens_per_step": tokens / steps,
            "tokens_per_s": tokens / m.stats.seconds if m.stats.seconds else 0.0, "allocator": active()}


def dry_run(recipe_data: dict[str, Any], steps: int = 3, timeout: float = 600) -> dict[str, Any]:
    """``run_steps`` in a fresh subprocess (so one candidate's memory never pollutes the next)."""
    with tempfile.TemporaryDirectory() as out:
        data = json.loads(json.dumps(recipe_data))
        data.setdefault("train", {}).update({"max_steps": steps, "log_every": 1, "save_every": 0, "eval_every": 0})
        data["output"] = {"dir": out, "name": "dry-run", "overwrite": True}
        try:
            proc = subprocess.run([sys.executable, "-m", "ftatlas.advise.probes"], input=json.dumps(data),
                                  capture_output=True, text=True, timeout=timeout, env=preload_env())
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
    row = next((json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")), None)
    if row is None:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit {proc.returncode}, no output"
        return {"error": re.sub(r"^[\w.]+(Error|Exception): ", "", last)}
    return row


if __name__ == "__main__":  # child of dry_run: recipe JSON on stdin, one ROW line on stdout
    print("ROW " + json.dumps(run_steps(json.loads(sys.stdin.read()))), flush=True)

"""Memory and load time of N LoRA runs served on one base (`ftatlas serve`'s pool) vs a copy of the base per run.

Saves SmolLM2-135M once as a plain safetensors model dir (the form of a hub model) and makes 8 LoRA run
directories on it (rank 16, all linear layers, random non-zero weights: serving cost does not depend on
training), then, each in a fresh process, loads
- the pool `load_pool` builds for the base alone and for 1, 4 and 8 runs (one base, `load_adapter` per run);
- the baseline a user would otherwise run: each run loaded on its own (`load_run_or_model`, what `ftatlas chat`
  and `eval` do), 4 and 8 of them kept in one process, i.e. a copy of the base per run;
and records load seconds and the memory the process holds after one forward pass per model id (PSS, so the
pages of a memory-mapped weights file count once however often they are mapped; RSS, USS and peak RSS are in the
JSON). Raw numbers: bench/results/serve_adapters.json.

    flock /tmp/ftatlas-heavy.lock python bench/serve_adapters.py     # ~2 min on 2 cores
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results"
BASE = "smollm2-135m"

PROBE = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
import psutil, torch
t0 = time.perf_counter()
if {shared!r}:
    from ftatlas.serve import load_pool
    pool = load_pool({targets!r}, device="cpu")
    models = [s.active for s in pool.models.values()]
else:
    import contextlib
    from ftatlas.models.trained import load_run_or_model
    kept = [load_run_or_model(t, "cpu")[0].model for t in {targets!r}]
    models = [lambda m=m: contextlib.nullcontext(m) for m in kept]
seconds = time.perf_counter() - t0
with torch.inference_mode():  # one forward per model id: every weight it serves with is touched (resident)
    for active in models:
        with active() as m:
            m(input_ids=torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]]))
mem = psutil.Process().memory_full_info()
print(json.dumps({{"seconds": seconds, "rss_mib": mem.rss / 2**20, "pss_mib": mem.pss / 2**20,
                  "uss_mib": mem.uss / 2**20,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def make_runs(parent: Path, n: int) -> tuple[str, list[str]]:
    """n LoRA run dirs. Each is saved from the adapter named "default": peft saves any other adapter name into a
    subfolder of adapter/, which is not the run-dir layout (and is why an earlier version of this bench failed)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from ftatlas.models.loading import load_model
    from ftatlas.recipe import build_recipe, dump_recipe
    from ftatlas.runs import RunDir

    loaded = load_model(BASE, device="cpu")
    base = parent / "base"
    loaded.model.save_pretrained(base)
    loaded.tokenizer.save_pretrained(base)
    model = get_peft_model(loaded.model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    paths = []
    for i in range(n):
        torch.manual_seed(i)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.normal_(std=0.02)
        name = f"run{i}"
        run = RunDir.create(parent, name)
        recipe = build_recipe({"model": {"name": str(base)}, "data": {"builtin": "contacts"},
                               "method": {"name": "lora", "r": 16, "alpha": 32},
                               "output": {"dir": str(parent), "name": name}})
        run.write_text("recipe.yaml", dump_recipe(recipe))
        run.save_weights(model, loaded.tokenizer)
        paths.append(str(run.path))
    return str(base), paths


def probe(targets: list[str], shared: bool) -> dict:
    code = PROBE.format(src=str(ROOT / "src"), targets=targets, shared=shared)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"probe failed ({'shared' if shared else 'copies'}, {len(targets)} targets):\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base_dir, runs = make_runs(Path(tmp), 8)
        rows = [{"runs": 0, "setup": "base alone", **probe([base_dir], True)}]
        for n in (1, 4, 8):
            rows.append({"runs": n, "setup": "one shared base", **probe(runs[:n], True)})
        for n in (4, 8):
            rows.append({"runs": n, "setup": "a base copy per run", **probe(runs[:n], False)})
    base = rows[0]["pss_mib"]
    copies = {r["runs"]: r for r in rows if r["setup"] == "a base copy per run"}
    lines = ["| LoRA runs | shared base: load s | shared base: PSS MiB | + MiB per run | "
             "base copy per run: load s | base copy per run: PSS MiB | memory ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["setup"] != "one shared base":
            continue
        per = (r["pss_mib"] - base) / r["runs"]
        c = copies.get(r["runs"])
        copy_cols = f"{c['seconds']:.1f} | {c['pss_mib']:.0f} | {c['pss_mib'] / r['pss_mib']:.1f}x" if c \
            else "(same as shared) | | 1.0x"
        lines.append(f"| {r['runs']} | {r['seconds']:.1f} | {r['pss_mib']:.0f} | {per:.1f} | {copy_cols} |")
    md = (f"# serve: N LoRA runs (r=16, all-linear) on {BASE} (safetensors, fp32), CPU\n\n"
          f"Base alone: {rows[0]['seconds']:.1f} s, {base:.0f} MiB. Each row is a fresh process; memory is the "
          "process's PSS after one forward pass per served model id (RSS, USS and peak RSS in the JSON).\n\n"
          + "\n".join(lines) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_adapters.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "serve_adapters.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

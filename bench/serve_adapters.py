"""Memory and load time of N LoRA runs served on one base (`ftatlas serve`'s pool) vs a copy of the base per run.

Makes 8 LoRA run directories on SmolLM2-135M (rank 16, all linear layers, random non-zero weights: serving cost
does not depend on training), then, each in a fresh process, loads the pool `load_pool` builds for the base
alone and for 1, 4 and 8 runs, and records load seconds and resident memory after loading. The baseline is what
serving each run as its own model costs: N x the base's memory. Raw numbers: bench/results/serve_adapters.json.

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
t0 = time.perf_counter()
from ftatlas.serve import load_pool
pool = load_pool({targets!r}, device="cpu")
print(json.dumps({{"seconds": time.perf_counter() - t0, "models": len(pool.models),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def make_runs(parent: Path, n: int) -> list[str]:
    import torch
    from peft import LoraConfig, get_peft_model

    from ftatlas.models.loading import load_model
    from ftatlas.recipe import build_recipe, dump_recipe
    from ftatlas.runs import RunDir

    loaded = load_model(BASE, device="cpu")
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(loaded.model, cfg, adapter_name="run0")
    paths = []
    for i in range(n):
        name = f"run{i}"
        if i:
            torch.manual_seed(i)
            model.add_adapter(name, cfg)
        model.set_adapter(name)
        run = RunDir.create(parent, name)
        recipe = build_recipe({"model": {"name": BASE}, "data": {"builtin": "contacts"},
                               "method": {"name": "lora", "r": 16, "alpha": 32},
                               "output": {"dir": str(parent), "name": name}})
        run.write_text("recipe.yaml", dump_recipe(recipe))
        run.save_weights(model, loaded.tokenizer)
        paths.append(str(run.path))
    return paths


def probe(targets: list[str]) -> dict:
    code = PROBE.format(src=str(ROOT / "src"), targets=targets)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = make_runs(Path(tmp), 8)
        rows = [{"runs": 0, **probe([BASE])}]
        for n in (1, 4, 8):
            rows.append({"runs": n, **probe(runs[:n])})
    base = rows[0]["rss_mib"]
    lines = ["| LoRA runs served | load s | RSS MiB | + MiB per run over the base | a copy of the base per run (MiB) |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        per = (r["rss_mib"] - base) / r["runs"] if r["runs"] else 0.0
        lines.append(f"| {r['runs']} | {r['seconds']:.1f} | {r['rss_mib']:.0f} | {per:.1f} | "
                     f"{base * max(r['runs'], 1):.0f} |")
    md = f"# serve: N LoRA runs (r=16, all-linear) on one {BASE} base, CPU\n\n" + "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_adapters.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / "serve_adapters.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

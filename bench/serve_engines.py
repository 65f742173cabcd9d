"""transformers' continuous batching (``model.generate_batch``) vs the plain batched ``generate`` the server uses.

Same model (default SmolLM2-135M), same 16 chat prompts, greedy, ``--max-tokens`` new tokens each, one process:
plain ``generate`` on the left-padded batch (what ``ftatlas serve`` runs per batch) and ``generate_batch``
(paged KV cache, requests scheduled token by token). Reports generated tokens/s of each and the ratio; raw
numbers to bench/results/serve_engines.json. The server keeps whichever is faster on this machine.

    flock /tmp/ftatlas-heavy.lock python bench/serve_engines.py      # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
RESULTS = ROOT / "bench" / "results"


def main() -> None:
    import torch

    from ftatlas.data.records import Message
    from ftatlas.data.templating import render_prompt
    from ftatlas.evaluate.generation import autocast_ctx, generation_config
    from ftatlas.models import resolve_precision
    from ftatlas.models.loading import load_model
    from ftatlas.recipe import DecodeSpec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    loaded = load_model(a.model, device="cpu")
    model, tok = loaded.model.eval(), loaded.tokenizer
    prompts = [render_prompt(tok, [Message("user", f"Write a short story about topic number {i}.")])
               for i in range(a.n)]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    cfg = generation_config(DecodeSpec(max_new_tokens=a.max_tokens), tok)
    autocast = resolve_precision("auto", "cpu").autocast
    rows = {}

    def plain() -> int:
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode(), autocast_ctx("cpu", autocast):
            out = model.generate(**enc, generation_config=cfg)
        new = out[:, enc["input_ids"].shape[1]:]
        return int(sum(((row != tok.pad_token_id) & (row != tok.eos_token_id)).sum() for row in new))

    def continuous() -> int:
        with torch.inference_mode(), autocast_ctx("cpu", autocast):
            outs = model.generate_batch(ids, generation_config=cfg, progress_bar=False)
        return sum(len([t for t in o.generated_tokens if t != tok.eos_token_id]) for o in outs.values())

    for name, fn in (("generate (padded batch)", plain), ("generate_batch (continuous)", continuous)):
        try:
            fn()  # warm-up
            t0 = time.perf_counter()
            tokens = fn()
            wall = time.perf_counter() - t0
            rows[name] = {"tokens": tokens, "seconds": wall, "tok_per_s": tokens / wall}
        except Exception as e:  # reported: an engine that does not run on this machine is a result too
            rows[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(name, rows[name], flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_engines.json").write_text(json.dumps({"model": a.model, "n": a.n, "max_tokens": a.max_tokens,
                                                            "results": rows}, indent=1))
    speeds = [r.get("tok_per_s") for r in rows.values()]
    if all(speeds):
        print(f"continuous / plain: {speeds[1] / speeds[0]:.2f}x")


if __name__ == "__main__":
    main()

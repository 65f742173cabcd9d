"""Evaluation generation: batched (left padding + KV cache, what ``ftatlas eval`` runs) vs one prompt at a time.

Same model (SmolLM2-135M), same held-out prompts of the built-in contacts task, greedy decoding,
alternating the two in one process (median of ``--reps``); prints examples/s of each, the speed-up and
how many answers agree (left padding can flip a near-tied greedy token, so agreement is reported
rather than assumed).

    flock /tmp/ftatlas-heavy.lock python bench/generate_throughput.py            # 32 prompts, ~2 min
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32, help="held-out prompts")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--new", type=int, default=40, help="max new tokens")
    p.add_argument("--reps", type=int, default=2)
    a = p.parse_args()

    from ftatlas.data.splits import load_builtin
    from ftatlas.data.templating import render_prompt
    from ftatlas.evaluate.generation import generate
    from ftatlas.models.device import resolve_precision
    from ftatlas.models.loading import load_model
    from ftatlas.recipe import DecodeSpec

    loaded = load_model("smollm2-135m")
    tok = loaded.tokenizer
    rows = load_builtin("contacts", "eval")[: a.n]
    prompts = [render_prompt(tok, r.prompt_and_reference()[0]) for r in rows]
    decode = DecodeSpec(max_new_tokens=a.new)
    autocast = resolve_precision("auto", "cpu").autocast
    times: dict[str, list[float]] = {"batched": [], "one at a time": []}
    outs: dict[str, list[str]] = {}
    for _ in range(a.reps):
        for name, size in (("batched", a.batch), ("one at a time", 1)):
            t = time.perf_counter()
            outs[name] = generate(loaded.model, tok, prompts, decode, batch_size=size, autocast=autocast,
                                  progress=False)
            times[name].append(time.perf_counter() - t)
    rate = {k: a.n / statistics.median(v) for k, v in times.items()}
    agree = sum(x == y for x, y in zip(outs["batched"], outs["one at a time"], strict=True))
    md = "\n".join([
        f"{a.n} contacts prompts, greedy, max_new_tokens={a.new}, {autocast or 'fp32'} autocast, median of {a.reps}",
        "", "| generation | examples/s |", "|---|---|",
        f"| one at a time (loop) | {rate['one at a time']:.2f} |",
        f"| batched {a.batch}, left pad, KV cache | {rate['batched']:.2f} |",
        f"| **speed-up** | **{rate['batched'] / rate['one at a time']:.2f}x** (answers identical: {agree}/{a.n}) |"])
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "generate_throughput.md").write_text(md + "\n")


if __name__ == "__main__":
    main()

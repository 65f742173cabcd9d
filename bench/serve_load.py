"""Load on `ftatlas serve`: 1, 4 and 16 concurrent clients against one server, side by side.

Starts `ftatlas serve TARGET` as a subprocess on 127.0.0.1 (default target: SmolLM2-135M, `smollm2-135m`; pass a
quickstart run dir to serve that run), waits for it, then for each client count sends ``--requests`` streamed
chat requests in all (each client sends its share one after another) with the official `openai` async client.
Per level: requests/s, aggregate generated tokens/s (the server's `usage` counts), p50/p95 time to first token
and total latency, and errors (must be 0). The 1-client level is the one-request-at-a-time baseline; the ratio
column is aggregate tokens/s over it. Target: 16 clients >= 3x, no errors.

    flock /tmp/ftatlas-heavy.lock python bench/serve_load.py                  # ~2 min on 2 cores
    python bench/serve_load.py --target runs/quickstart --clients 1,16 --requests 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOPICS = "a lighthouse|a lost key|the first snow|a robot gardener|a night train|an old map|a quiet village|a storm" \
    .split("|")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(target: str, port: int, max_batch: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "ftatlas.launch", "serve", target, "--port", str(port),
           "--max-batch", str(max_batch), "--max-queue", "256"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 300) -> float:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{proc.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("server did not start in time")


async def one_request(client, model: str, i: int, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first, tokens = None, 0
    ask = f"Write a short story about {TOPICS[i % len(TOPICS)]}."
    try:
        stream = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": ask}],
            max_tokens=max_tokens, temperature=0, stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return {"ok": True, "ttft": first if first is not None else time.perf_counter() - t0,
                "latency": time.perf_counter() - t0, "tokens": tokens}
    except Exception as e:  # counted and reported, never hidden
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "latency": time.perf_counter() - t0}


async def level(url: str, model: str, clients: int, requests: int, max_tokens: int) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
    shares = [requests // clients + (k < requests % clients) for k in range(clients)]

    async def worker(k: int) -> list[dict]:
        return [await one_request(client, model, k * 1000 + j, max_tokens) for j in range(shares[k])]

    t0 = time.perf_counter()
    results = [r for rs in await asyncio.gather(*(worker(k) for k in range(clients))) for r in rs]
    wall = time.perf_counter() - t0
    await client.close()
    ok = [r for r in results if r["ok"]]
    return {"clients": clients, "requests": len(results), "errors": len(results) - len(ok),
            "error_samples": [r["error"] for r in results if not r["ok"]][:3], "wall_s": wall,
            "req_per_s": len(ok) / wall, "tokens": sum(r["tokens"] for r in ok),
            "tok_per_s": sum(r["tokens"] for r in ok) / wall,
            "ttft_p50": pct([r["ttft"] for r in ok], 9), "ttft_p95": pct([r["ttft"] for r in ok], 18),
            "lat_p50": pct([r["latency"] for r in ok], 9), "lat_p95": pct([r["latency"] for r in ok], 18)}


def pct(xs: list[float], q: int) -> float:
    """The q-th of 19 cut points (q=9: p50, q=18: p95)."""
    return statistics.quantiles(xs, n=20)[q] if len(xs) >= 2 else (xs[0] if xs else 0.0)


def table(rows: list[dict], meta: dict) -> str:
    base = rows[0]["tok_per_s"] or 1.0
    lines = [f"# serve load: {meta['target']} (max_tokens {meta['max_tokens']}, max_batch {meta['max_batch']})", "",
             f"server ready in {meta['startup_s']:.1f} s; {meta['machine']}", "",
             "| clients | requests | errors | req/s | gen tok/s | vs 1 client | TTFT p50 / p95 (s) | "
             "latency p50 / p95 (s) |", "|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['req_per_s']:.2f} | "
                     f"{r['tok_per_s']:.1f} | {r['tok_per_s'] / base:.2f}x | {r['ttft_p50']:.2f} / {r['ttft_p95']:.2f}"
                     f" | {r['lat_p50']:.2f} / {r['lat_p95']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="smollm2-135m", help="run dir or model served")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=32, help="requests per level, split across its clients")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--out", default=str(RESULTS / "serve_load"))
    a = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(a.target, port, a.max_batch)
    try:
        startup = wait_ready(proc, url)
        import httpx

        model = httpx.get(f"{url}/v1/models").json()["data"][-1]["id"]  # a run's id comes after its base's
        asyncio.run(level(url, model, 1, 2, a.max_tokens))  # warm-up, not reported
        rows = []
        for n in [int(x) for x in a.clients.split(",")]:
            rows.append(asyncio.run(level(url, model, n, a.requests, a.max_tokens)))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    meta = {"target": a.target, "model": model, "max_tokens": a.max_tokens, "max_batch": a.max_batch,
            "startup_s": startup, "machine": f"{os.cpu_count()} CPU cores"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{a.out}.json").write_text(json.dumps({"meta": meta, "levels": rows}, indent=1))
    md = table(rows, meta)
    Path(f"{a.out}.md").write_text(md)
    print(md)
    worst = max(r["errors"] for r in rows)
    ratio = rows[-1]["tok_per_s"] / (rows[0]["tok_per_s"] or 1.0)
    print(f"{rows[-1]['clients']} clients vs 1: {ratio:.2f}x aggregate tokens/s (target >= 3x); errors {worst}")


if __name__ == "__main__":
    main()

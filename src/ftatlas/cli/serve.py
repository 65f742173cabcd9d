"""``ftatlas serve``: runs, adapters and exported models behind an OpenAI-compatible API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from ftatlas.cli.common import USER_ERRORS, app, err, fail, out

Backend = Literal["auto", "transformers", "llama.cpp", "vllm"]


@app.command()
def serve(
    targets: Annotated[list[str] | None, typer.Argument(help="run directories, exported .gguf files or models; "
                                                             "each becomes a model id (a run's directory name)")]
    = None,
    runs: Annotated[Path | None, typer.Option(
        "--runs", help="also serve every finished run in this folder, runs that appear later included; each is "
                       "loaded on its first request")] = None,
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs --api-key-env")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    api_key_env: Annotated[str | None, typer.Option(
        "--api-key-env", help="environment variable holding the bearer key clients must send")] = None,
    backend: Annotated[str, typer.Option(
        help="auto (llama.cpp for .gguf when installed, else transformers), transformers, llama.cpp, vllm")]
    = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps (transformers backend)")] = "auto",
    max_tokens: Annotated[int, typer.Option(help="the most tokens one answer may ask for")] = 1024,
    max_prompt_tokens: Annotated[int, typer.Option(help="the longest prompt accepted, in tokens")] = 4096,
    max_body_bytes: Annotated[int, typer.Option(help="the largest request body accepted")] = 1 << 20,
    max_queue: Annotated[int, typer.Option(help="requests inside at once (running + waiting); more get 429")]
    = 64,
    max_batch: Annotated[int, typer.Option(help="sequences generated together in one batch")] = 16,
    timeout: Annotated[float, typer.Option(help="seconds one request may take")] = 120.0,
) -> None:
    """Serve runs over HTTP with the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models) and
    /v1/score for reward runs. Adapter runs on one base share it; each run keeps its template and context."""
    targets = targets or []
    if backend not in ("auto", "transformers", "llama.cpp", "vllm"):
        fail(ValueError(f"--backend {backend!r}: choose auto, transformers, llama.cpp or vllm"))
    if not targets and runs is None:
        fail(ValueError("nothing to serve: give run directories, .gguf files or models, or --runs DIR"))
    if runs is not None and not runs.is_dir():
        fail(FileNotFoundError(f"--runs {runs}: no such folder"))
    try:
        from ftatlas.serve.server import api_key_from_env

        key = api_key_from_env(api_key_env, host)
        if backend == "vllm":
            if runs is not None:
                raise ValueError("--runs is not available with --backend vllm (vLLM loads its adapters at start)")
            _serve_vllm(targets, host, port, key, max_tokens)
            return
        from ftatlas.serve import Limits, create_app, load_pool

        limits = Limits(api_key=key, max_body_bytes=max_body_bytes, max_tokens=max_tokens,
                        default_max_tokens=min(256, max_tokens), max_prompt_tokens=max_prompt_tokens,
                        max_queue=max_queue, request_timeout_s=timeout)
        err.print(f"loading {len(targets)} target(s)...")
        pool = load_pool(targets, device, backend)
    except USER_ERRORS as e:
        fail(e)
    except ImportError as e:
        fail(ValueError(f"{e}; install the server with: pip install 'ftatlas[serve]'"))
    for s in pool.models.values():
        what = "reward model (/v1/score)" if s.kind == "reward" else f"adapter {s.adapter}" if s.adapter \
            else "model"
        ctx = f", context {s.context.name}" if s.context is not None else ""
        out.print(f"  {s.id}: {what} on {s.backend}{ctx}", highlight=False, markup=False)
    for note in pool.notes:
        out.print(f"  note: {note}", highlight=False, markup=False)
    auth = "bearer key required" if key else "no key (loopback only)"
    if runs is not None:
        out.print(f"  and every finished run in {runs}/, loaded on its first request", highlight=False, markup=False)
    out.print(f"serving on http://{host}:{port}/v1  ({auth}); Ctrl-C stops after in-flight requests finish",
              highlight=False, markup=False)
    from ftatlas.serve.server import run_server

    run_server(create_app(pool, limits, max_batch=max_batch, runs_root=runs), host, port)


def _serve_vllm(targets: list[str], host: str, port: int, key: str | None, max_tokens: int) -> None:
    from ftatlas.serve.vllm import run_vllm, vllm_command, vllm_unavailable

    why = vllm_unavailable()
    if why:
        fail(ValueError(why))
    cmd = vllm_command(targets, host, port, max_tokens)
    out.print(f"backend vllm: {' '.join(cmd)}", highlight=False, markup=False)
    raise typer.Exit(run_vllm(cmd, key))

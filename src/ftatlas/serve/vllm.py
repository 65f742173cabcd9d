"""The vLLM backend: on CUDA with ``vllm`` installed, serving is handed to vLLM's own OpenAI server.

Adapter runs on one base become ``--lora-modules name=path`` of one ``vllm serve BASE --enable-lora``.
vLLM applies the model's own chat template and no ftatlas context, so runs that need a context (RAG,
few-shot), reward runs, full-weight runs and runs on different bases are refused here: serve those with the
transformers backend.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def vllm_unavailable() -> str | None:
    """Why vLLM cannot serve here (None when it can)."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "the vllm backend needs a CUDA GPU (torch.cuda.is_available() is False); use --backend transformers"
    if importlib.util.find_spec("vllm") is None or shutil.which("vllm") is None:
        return "the vllm backend needs vLLM installed (pip install vllm) on this CUDA machine"
    return None


def vllm_command(targets: list[str], host: str, port: int, max_tokens: int) -> list[str]:
    """``vllm serve`` arguments serving ``targets``: one base model, or adapter runs on one base."""
    from ftatlas.methods import METHODS
    from ftatlas.objectives import OBJECTIVES
    from ftatlas.recipe import load_recipe
    from ftatlas.runs import RunDir

    bases, loras = set(), []
    for t in targets:
        if not (Path(t) / "recipe.yaml").is_file():
            bases.add(t)
            continue
        run = RunDir.open(t)
        recipe = load_recipe(run.recipe_file)
        name = Path(t).resolve().name
        if OBJECTIVES.get(recipe.objective.name).head != "causal_lm":
            raise ValueError(f"{t}: a {recipe.objective.name} run cannot be served by vLLM; use --backend "
                             "transformers (it answers POST /v1/score)")
        if recipe.context.name != "zero_shot" or recipe.context.params():
            raise ValueError(f"{t}: its {recipe.context.name} context is not applied by vLLM; use --backend "
                             "transformers to serve the run as it was measured")
        bases.add(recipe.model.name)
        if METHODS.get(recipe.method.name).trains:
            if run.weights_dir() != run.adapter_dir:
                raise ValueError(f"{t}: full-weight runs are served by vLLM as a model: pass {run.weights_dir()}")
            loras.append(f"{name}={run.adapter_dir}")
    if len(bases) != 1:
        raise ValueError(f"vLLM serves one base model per server; these targets use {len(bases)}: "
                         f"{', '.join(sorted(bases))}")
    from ftatlas.models.loading import resolve_source

    cmd = ["vllm", "serve", resolve_source(bases.pop()), "--host", host, "--port", str(port),
           "--max-model-len", str(max(2048, max_tokens * 2))]
    if loras:
        cmd += ["--enable-lora", "--lora-modules", *loras]
    return cmd


def run_vllm(cmd: list[str], api_key: str | None) -> int:
    """Run vLLM's server in the foreground; the key travels as VLLM_API_KEY, never on a command line."""
    import os
    import subprocess

    env = {**os.environ, **({"VLLM_API_KEY": api_key} if api_key else {})}
    return subprocess.call(cmd, env=env)

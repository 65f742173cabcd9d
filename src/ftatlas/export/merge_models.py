"""``ftatlas merge-models SPEC.yaml``: merge runs or models with mergekit (linear, task arithmetic, SLERP, TIES,
DARE), then re-score the merge on a run's held-out split next to every run that went into it.

```yaml
method: ties                 # linear | task_arithmetic | slerp | ties | dare_ties | dare_linear | ...
base: smollm2-135m           # model source (alias, dir, .gguf); the task vectors are taken against it
models:
  - {run: runs/lora-a, weight: 0.5, density: 0.5}
  - {run: runs/lora-b, weight: 0.5, density: 0.5}
parameters: {}               # method-wide mergekit parameters (slerp: {t: 0.5})
dtype: float32
rescore: runs/lora-a         # whose held-out split, metrics and decoding score the merge (default: first run)
out: merged/ties
```

Runs are merged into their base first (``ftatlas.export.source``); the merge itself is mergekit's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import AutoModelForCausalLM

from ftatlas.export.formats import TransformersConsumer
from ftatlas.export.parity import heldout, run_reference, score
from ftatlas.export.safetensors import save_model_dir
from ftatlas.export.source import ExportError, load_source
from ftatlas.models.loading import resolve_source
from ftatlas.runs import atomic_write


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: str | None = Field(None, description="a run directory (its adapter is merged into its base first)")
    model: str | None = Field(None, description="or a model source: alias, local dir, .gguf file")
    weight: float | None = Field(None, description="mergekit `weight` of this model")
    density: float | None = Field(None, gt=0, le=1, description="share of the task vector kept (ties, dare)")


class MergeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = Field(..., description="mergekit merge_method: linear, task_arithmetic, slerp, ties, dare_ties, ...")
    base: str | None = Field(None, description="base model the task vectors are taken against")
    models: list[Input] = Field(..., min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict, description="method-wide mergekit parameters")
    dtype: str = Field("float32", description="dtype mergekit computes and writes in")
    rescore: str | None = Field(None, description="run whose held-out split scores the merge (default: first run)")
    out: str = Field(..., description="output folder")


def load_spec(path: str | Path) -> MergeSpec:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"merge spec {path} does not exist")
    try:
        spec = MergeSpec.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as e:
        raise ExportError(f"{path}: invalid merge spec: {e}") from None
    for i, m in enumerate(spec.models):
        if (m.run is None) == (m.model is None):
            raise ExportError(f"{path}: models[{i}]: give exactly one of run: or model:")
    return spec


def _mergekit_config(spec: MergeSpec, dirs: list[Path], base: Path | None) -> dict[str, Any]:
    models = []
    for m, d in zip(spec.models, dirs, strict=True):
        params = {k: v for k, v in (("weight", m.weight), ("density", m.density)) if v is not None}
        models.append({"model": str(d), **({"parameters": params} if params else {})})
    cfg: dict[str, Any] = {"merge_method": spec.method, "models": models, "dtype": spec.dtype}
    if base is not None:
        cfg["base_model"] = str(base)
    if spec.parameters:
        cfg["parameters"] = spec.parameters
    return cfg


def merge_models(spec: MergeSpec, progress: bool = True) -> dict[str, Any]:
    """Run the merge, write the merged model (with the rescore run's tokenizer and template) and merge.json."""
    try:
        from mergekit.config import MergeConfiguration
        from mergekit.merge import MergeOptions, run_merge
    except ImportError as e:
        raise ExportError(f"merge-models needs mergekit ({e}): pip install 'ftatlas[merge]'") from None
    runs = [m.run for m in spec.models if m.run]
    rescore = spec.rescore or (runs[0] if runs else None)
    if rescore is None:
        raise ExportError("merge-models: set rescore: RUN_DIR (whose held-out split scores the merge)")
    out = Path(spec.out)
    with tempfile.TemporaryDirectory(prefix="ftatlas-merge-") as tmp:
        dirs = []
        for i, m in enumerate(spec.models):
            if m.run:  # one plain checkpoint per run: adapter folded into its base
                dirs.append(save_model_dir(load_source(m.run), Path(tmp) / f"in{i}", torch.float32))
            else:
                dirs.append(Path(resolve_source(m.model or "")))
        base = Path(resolve_source(spec.base)) if spec.base else None
        config = _mergekit_config(spec, dirs, base)
        try:
            merge_config = MergeConfiguration.model_validate(config)
        except ValidationError as e:
            raise ExportError(f"mergekit refused the merge config: {e}") from None
        run_merge(merge_config, str(out), MergeOptions(copy_tokenizer=False, write_model_card=False, quiet=True,
                                                        random_seed=0))
    src = load_source(rescore)
    src.tokenizer.save_pretrained(out)  # the template the rescore run trained with
    held = heldout(src, None)
    merged = TransformersConsumer(AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32))
    result = score(merged, src, held, progress)
    inputs = []
    for m in spec.models:
        if m.run:
            ref = run_reference(load_source(m.run), held, progress) if m.run != rescore else run_reference(
                src, held, progress)
            inputs.append({"run": m.run, "metrics": ref.get("metrics"), "ci95": ref.get("ci95")})
    report = {"method": spec.method, "out": str(out), "mergekit_config": config, "rescored_on": rescore,
              "merged": {k: result.get(k) for k in ("metrics", "ci95", "n", "gen_tokens_per_s")}, "inputs": inputs}
    atomic_write(out / "merge.json", json.dumps(report, indent=2, default=str) + "\n")
    return report

"""Weighted mixtures of several data files (``ftatlas data mix``; a recipe's ``data.train`` may be one).

A mixture spec is YAML::

    seed: 0
    total: 1000            # optional; default: the most rows reachable without repeating any source
    sources:
      - {path: chat.jsonl, weight: 0.7}
      - {path: more.jsonl, weight: 0.3, format: alpaca}
      - {path: tiny.jsonl, count: 50}   # an exact count instead of a weight

Paths are relative to the spec file. Each source gives ``round(weight / sum(weights) * rest)`` rows
(``rest`` = total minus the exact counts), drawn without replacement by a seeded shuffle; a source asked
for more rows than it has is repeated (upsampled) only with ``replace: true``, else it is an error. The
report gives, per source, the rows available, taken and left out.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ftatlas.data.errors import DataError
from ftatlas.data.table import Row, load_table


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="data file, relative to the spec file")
    weight: float | None = Field(None, gt=0, description="share of the mixture (normalised over the sources)")
    count: int | None = Field(None, ge=0, description="exact number of rows instead of a weight")
    format: str = Field("auto", description="row format of this file")

    @model_validator(mode="after")
    def _one(self) -> Source:
        if (self.weight is None) == (self.count is None):
            raise ValueError("give exactly one of weight or count")
        return self


class MixSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: list[Source] = Field(min_length=1, description="the files to mix")
    seed: int = Field(0, description="seed of the draw and the final shuffle")
    total: int | None = Field(None, ge=1, description="rows in the mixture (default: as many as fit)")
    replace: bool = Field(False, description="repeat a source's rows when its share exceeds what it has")
    shuffle: bool = Field(True, description="interleave the sources (seeded) instead of concatenating")


def load_spec(path: str | Path) -> MixSpec:
    p = Path(path)
    if not p.is_file():
        raise DataError(p, None, None, "mixture spec does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise DataError(p, None, None, f"not valid YAML: {e}") from None
    try:
        return MixSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or None
        raise DataError(p, None, where, first["msg"]) from None


def _targets(spec: MixSpec, sizes: list[int], where: Path) -> list[int]:
    fixed = sum(s.count or 0 for s in spec.sources)
    wsum = sum(s.weight or 0.0 for s in spec.sources)
    if spec.total is not None:
        rest = spec.total - fixed
        if rest < 0:
            raise DataError(where, None, "total", f"total {spec.total} is below the exact counts ({fixed})")
    elif wsum:
        # the most rows possible with no weighted source repeated
        rest = int(min(n / ((s.weight or 0) / wsum) for s, n in zip(spec.sources, sizes, strict=True) if s.weight))
    else:
        rest = 0
    want = [s.count if s.count is not None else round((s.weight or 0) / wsum * rest) for s in spec.sources]
    for i, (s, n, w) in enumerate(zip(spec.sources, sizes, want, strict=True)):
        if w > n and not spec.replace:
            raise DataError(where, None, f"sources.{i}", f"{s.path} has {n} rows but the mixture asks for {w}; "
                                                         "lower total/count or set replace: true to upsample")
    return want


def mix(spec_path: str | Path, kind: str = "auto") -> tuple[list[Row], dict[str, Any]]:
    """The mixed rows and the per-source report."""
    where = Path(spec_path)
    spec = load_spec(where)
    tables = [load_table(where.parent / s.path, s.format, kind) for s in spec.sources]
    want = _targets(spec, [len(t) for t in tables], where)
    rng = random.Random(spec.seed)
    mixed: list[Row] = []
    report: list[dict[str, Any]] = []
    for s, rows, w in zip(spec.sources, tables, want, strict=True):
        order = list(range(len(rows)))
        rng.shuffle(order)
        picks = [order[i % len(order)] for i in range(w)] if order else []
        mixed += [rows[i] for i in picks]
        used = len(set(picks))
        report.append({"path": str(where.parent / s.path), "weight": s.weight, "count": s.count, "available": len(rows),
                       "taken": w, "share": 0.0, "repeated": w - used, "left_out": len(rows) - used})
    for r in report:
        r["share"] = round(r["taken"] / len(mixed), 4) if mixed else 0.0
    if spec.shuffle:
        rng.shuffle(mixed)
    if not mixed:
        raise DataError(where, None, "sources", "the mixture is empty")
    return mixed, {"spec": str(where), "seed": spec.seed, "rows": len(mixed), "sources": report}


def is_mixture(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")

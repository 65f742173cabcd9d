"""The export formats, one module each (``safetensors``, ``gguf``, ``bnb``), registered where they live.

An exporter writes artifacts from a :class:`Source` and opens them again in their real consumer
(transformers or llama.cpp), which the parity check then scores on the run's held-out split.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from ftatlas.export.source import ExportError, Source
from ftatlas.recipe import DecodeSpec
from ftatlas.registry import Registry


@dataclass
class Artifact:
    path: Path  # the file or folder a consumer loads
    files: list[Path]  # everything written (sizes are summed over these)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        """The artifact a consumer loads (a GGUF file, or a checkpoint folder with its tokenizer)."""
        return _bytes(self.path)

    @property
    def files_bytes(self) -> int:
        """Everything written (e.g. a GGUF plus its LoRA GGUF and Modelfile)."""
        return sum(_bytes(f) for f in self.files)


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


class Consumer:
    """An export loaded where it will run: logits for the parity check, answers for the metric."""

    name: str = ""
    model: Any = None  # a transformers model when the consumer is transformers (model metrics then apply too)

    def logits(self, ids: list[int]) -> torch.Tensor:
        """float32 [len(ids), vocab] next-token logits at every position."""
        raise NotImplementedError

    def generator(self, decode: DecodeSpec) -> Callable[[list[str]], list[str]] | None:
        """None: evaluate through ``model.generate`` (transformers)."""
        return None

    def close(self) -> None:
        self.model = None


class TransformersConsumer(Consumer):
    name = "transformers"

    def __init__(self, model: Any) -> None:
        self.model = model.eval()

    @torch.no_grad()
    def logits(self, ids: list[int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model(input_ids=torch.tensor([ids], device=device)).logits[0].float().cpu()


class Exporter:
    """One format. ``quants``: the values ``--quant`` takes (empty: none); ``default_quant`` when it is omitted."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    consumer: ClassVar[str] = "transformers"
    default_quant: ClassVar[str | None] = None
    # Logit parity bound per quant, on max |logit diff| / max |logit| against the fp32 source; a quant not
    # listed (low-bit) is judged by the held-out metric and its interval only.
    tolerances: ClassVar[dict[str, float]] = {}

    def quants(self) -> list[str]:
        return []

    def unavailable(self) -> str | None:
        """Why this format cannot run on this machine (what to install or which device it needs); None: it can."""
        return None

    def tolerance(self, quant: str | None) -> float | None:
        return self.tolerances.get(quant or "")

    def check(self, quant: str | None) -> str | None:
        """The quant to use; raises on one this format does not take (before anything is loaded)."""
        quant = quant or self.default_quant
        known = self.quants()
        if quant is not None and quant not in known:
            raise ExportError(f"--to {self.name} takes --quant {' | '.join(known) or '(nothing)'}, not {quant!r}")
        return quant

    def write(self, src: Source, out: Path, quant: str | None) -> Artifact:
        raise NotImplementedError

    def open(self, artifact: Artifact, src: Source) -> Consumer:
        raise NotImplementedError


EXPORTERS: Registry[type[Exporter]] = Registry("export format")
register = EXPORTERS.register_named


def import_formats() -> None:
    """Every module in this package that registers a format (one module per format, no central list)."""
    import ftatlas.export as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"ftatlas.export.{info.name}")


def get_exporter(name: str) -> Exporter:
    import_formats()
    return EXPORTERS.get(name)()


def export_formats() -> list[dict[str, Any]]:
    """Every registered format as the UI offers it: its quants (default first) and, when it cannot run here, why."""
    import_formats()
    out = []
    for name in EXPORTERS.names():
        exporter = EXPORTERS.get(name)()
        reason = exporter.unavailable()
        quants = [] if reason else exporter.quants()
        if exporter.default_quant in quants:
            quants = [exporter.default_quant, *(q for q in quants if q != exporter.default_quant)]
        out.append({"name": name, "summary": exporter.summary, "consumer": exporter.consumer, "quants": quants,
                    "default_quant": exporter.default_quant, "unavailable": reason})
    return out

"""``train.gradient_checkpointing: auto``, decided by memory.

Checkpointing trades ~35% more compute per step (a second forward in the backward) for activation memory.
Under ``auto`` it is on only where the advisor's own estimate of the step's peak *without* it
(``advise/estimate.py``, the model the advisor ranks methods with) is above ``MARGIN`` of the memory this run
may use: ``train.memory_budget_gb`` if set, else what the device has available when training starts (CPU:
``MemAvailable`` plus this process's resident set, which already holds the loaded model; CUDA: free plus what
this process has allocated). The peaks compared include what the process holds beyond the modelled base
weights (interpreter, libraries). Explicit ``true``/``false`` always wins; methods that cannot checkpoint
(``Method.checkpointing = False``, e.g. prefix) stay off; where no estimate can be made (rows that are not
conversations, an architecture the estimator does not model) it stays on, as before, and the log says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ftatlas.recipe import Recipe

MARGIN = 0.8  # the estimate is within 15% on measured runs (README Accuracy); leave room for that and the OS


@dataclass(frozen=True)
class Decision:
    on: bool
    reason: str
    peak_without: int | None = None
    peak_with: int | None = None
    available: int | None = None


def _gb(b: int) -> str:
    return f"{b / 2**30:.2f} GiB"


def held_bytes(device: str) -> int:
    """What this process holds now: its resident set on CPU (interpreter, libraries, the loaded model), its
    allocated memory on CUDA."""
    if device == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.memory_allocated())
    import psutil

    return int(psutil.Process().memory_info().rss)


def available_bytes(device: str) -> int:
    """Memory this process could use now: free memory plus what it already holds."""
    if device == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free + held_bytes(device))
    import psutil

    return int(psutil.virtual_memory().available + held_bytes(device))


def decide(peak_without: int, peak_with: int, available: int, margin: float = MARGIN) -> Decision:
    """On only where the peak without checkpointing would not fit in ``margin`` of ``available`` (the peaks
    include everything the process holds, see ``plan_checkpointing``)."""
    limit = int(available * margin)
    if peak_without <= limit:
        return Decision(False, f"off: estimated peak without it {_gb(peak_without)} fits in {margin:.0%} of "
                        f"{_gb(available)} available (with it: {_gb(peak_with)}; off trains faster)",
                        peak_without, peak_with, available)
    return Decision(True, f"on: estimated peak without it {_gb(peak_without)} exceeds {margin:.0%} of "
                    f"{_gb(available)} available (with it: {_gb(peak_with)})", peak_without, peak_with, available)


def plan_checkpointing(recipe: Recipe, config: Any, lengths: list[int] | None, loss_tokens: int | None,
                       device: str, autocast: bool) -> Decision:
    """The run's checkpointing decision and its reason, from the recipe, the data's token lengths and memory."""
    from ftatlas.methods import METHODS

    t = recipe.train
    if t.gradient_checkpointing != "auto":
        return Decision(bool(t.gradient_checkpointing), f"{'on' if t.gradient_checkpointing else 'off'}: "
                        "train.gradient_checkpointing set explicitly")
    method = METHODS.get(recipe.method.name)
    if not method.checkpointing:
        return Decision(False, f"off: method {recipe.method.name!r} cannot checkpoint")
    fallback = recipe.checkpointing()
    if not lengths:
        return Decision(fallback, f"on (no memory estimate for objective {recipe.objective.name!r}'s rows)")
    from ftatlas.advise.estimate import DataShape, StepSpec, estimate_step

    shape = DataShape.from_lengths(lengths, loss_tokens)
    spec = dict(batch_size=t.batch_size, autocast=autocast, chunked_loss=t.chunked_loss, loss_chunk=t.loss_chunk,
                optimizer="adamw" if t.optim == "adamw" else "adamw_8bit", device=device,
                frozen_half=t.frozen_half, pad_multiple=t.pad_multiple)
    try:
        without = estimate_step(config, recipe.method.name, shape, StepSpec(gradient_checkpointing=False, **spec),
                                recipe.method_params())
        with_ = estimate_step(config, recipe.method.name, shape, StepSpec(gradient_checkpointing=True, **spec),
                              recipe.method_params())
    except (ValueError, RuntimeError, KeyError, AttributeError, TypeError) as e:
        return Decision(fallback, f"on (no memory estimate: {str(e).split(';')[0]})")
    budget = int(t.memory_budget_gb * 2**30) if t.memory_budget_gb else available_bytes(device)
    # The estimate models the tensors (base weights included); what the process holds beyond the base (the
    # interpreter and libraries: ~0.8 GiB of resident set on CPU) counts against the budget too.
    overhead = max(0, held_bytes(device) - without.base_bytes)
    return decide(without.peak_bytes + overhead, with_.peak_bytes + overhead, budget)

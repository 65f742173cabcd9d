"""``ftatlas advise``: the user's facts -> the decision map walked, a per-method budget table, the recommendation.

Facts come from the model's config (no weights are loaded), the data file templated with the model's
tokenizer (token-length percentiles, loss share, answer lengths) and the machine (or ``--memory``/``--device``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig

from ftatlas import allocator
from ftatlas.advise.decision_map import NODES, Facts, Walk, leaf_methods, walk
from ftatlas.advise.estimate import Arch, DataShape, StepEstimate, StepSpec, Throughput, estimate_step
from ftatlas.methods import METHODS
from ftatlas.models.loading import ModelLoadError, resolve_source

HEADROOM = 0.9  # a method "fits" when its estimated peak is within 90% of the budget


def load_config(model: str) -> PretrainedConfig:
    """The model's config only (no weights); a clear error for anything unloadable."""
    source = resolve_source(model)
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read the config of model {model!r}: {str(e).splitlines()[0]}") from None


def candidate_params(method: str, config: PretrainedConfig) -> dict[str, Any]:
    """Method params the advisor uses: the method's ``advice_params`` (e.g. BitFit adds biases to a bias-free model)."""
    return METHODS.get(method)().advice_params(config)


@dataclass(frozen=True)
class DataFacts:
    shape: DataShape
    answer_p50: int
    distinct_answers: int
    prompt_tokens_mean: float  # tokens of one rendered example (what a few-shot prompt pays per example)
    query_tokens_mean: float  # tokens of the prompt alone (what a fine-tuned model is sent per request)
    truncated: int


def parse_size(text: str) -> float:
    """``24GB``, ``512MB``, ``1.5 GiB`` or a plain number of GB -> GB."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]i?b?)?\s*", text.lower())
    if not m:
        raise ValueError(f"--memory {text!r}: use a size like 24GB, 512MB or 16")
    scale = {"k": 1e-6, "m": 1e-3, "g": 1, "t": 1e3}[(m.group(2) or "g")[0]]
    return float(m.group(1)) * scale


def parse_duration(text: str) -> float:
    """``2h``, ``90m``, ``30s`` or seconds -> seconds."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise ValueError(f"--time {text!r}: use a duration like 2h, 90m or 3600")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def machine_memory_gb(device: str) -> float:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 1e9
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return 8.0


def _rows(data: str, goal: str) -> list:
    from ftatlas.data.builtin import BUILTINS
    from ftatlas.data.splits import load_builtin, read_rows

    if data in BUILTINS:
        return load_builtin(data, "train")
    if not Path(data).is_file():
        raise FileNotFoundError(f"data {data!r} is neither a file nor a built-in dataset ({', '.join(BUILTINS)})")
    kind = "preference" if goal == "alignment" else "conversations"
    rows = read_rows(data, "auto", kind)
    if kind == "preference":  # lengths of the chosen conversation are what DPO's forward sees (x2 for rejected)
        from ftatlas.data.records import Conversation, Message

        rows = [Conversation([*(r.prompt or [Message("user", r.prompt_text or "")]), Message("assistant", r.chosen)],
                             source=r.source, line=r.line) for r in rows]
    return rows


def data_facts(model: str, data: str, max_length: int = 1024, goal: str = "task") -> DataFacts:
    """Token statistics of ``data`` under ``model``'s tokenizer and chat template."""
    from ftatlas.data.templating import encode_all, render_prompt
    from ftatlas.models.loading import load_tokenizer

    tok = load_tokenizer(resolve_source(model))
    rows = _rows(data, goal)
    enc, stats = encode_all(tok, rows, max_length, "assistant")
    if not enc:
        raise ValueError(f"data {data}: no row carries loss after templating ({stats.summary()})")
    answers = sorted(e.n_loss for e in enc)
    refs = {r.prompt_and_reference()[1] for r in rows if not r.is_text}
    queries = [len(tok(render_prompt(tok, r.prompt_and_reference()[0]), add_special_tokens=False).input_ids)
               for r in rows[:200] if not r.is_text]
    shape = DataShape.from_lengths([len(e.input_ids) for e in enc], stats.loss_tokens)
    return DataFacts(shape, answers[len(answers) // 2], len(refs), shape.mean,
                     sum(queries) / len(queries) if queries else 0.0, stats.truncated)


@dataclass
class Row:
    method: str
    estimate: StepEstimate | None
    fits: bool
    epoch_seconds: float = 0.0
    note: str = ""
    measured: dict[str, Any] = field(default_factory=dict)


@dataclass
class Advice:
    goal: str
    model: str
    device: str
    budget_gb: float
    throughput: Throughput
    data: DataFacts
    rows: list[Row]
    walk: Walk
    method: str  # recommended training method ("none" = no training)
    reasons: list[str]
    notes: list[str]
    spec: StepSpec


def method_table(config: PretrainedConfig, data: DataShape, spec: StepSpec, budget_gb: float,
                 tp: Throughput) -> list[Row]:
    """Every registered training method estimated against the budget."""
    rows = []
    for name in METHODS.names():
        if not METHODS.get(name).trains:
            continue
        try:
            est = estimate_step(config, name, data, spec, candidate_params(name, config))
        except (ValueError, RuntimeError) as e:
            rows.append(Row(name, None, False, note=str(e).split(";")[0]))
            continue
        fits = est.peak_bytes <= budget_gb * 1e9 * HEADROOM
        rows.append(Row(name, est, fits, est.seconds_per_epoch(tp, data, spec.batch_size)))
    return rows


def _choose(leaf: str, rows: list[Row]) -> str:
    fitting = {r.method for r in rows if r.fits}
    options = [m for m in leaf_methods(leaf) if m in fitting or not METHODS.get(m).trains]
    if options:
        return options[0]
    return "none"


def advise(model: str, data: str, goal: str, device: str = "auto", memory_gb: float | None = None,
           time_s: float | None = None, batch_size: int = 8, max_length: int = 1024,
           gradient_checkpointing: bool | None = None, few_shot_k: int = 3) -> Advice:
    """The whole advice, without running anything heavy (``--measure`` is separate)."""
    from ftatlas.advise.probes import device_throughput
    from ftatlas.models.device import cpu_has_bf16

    config = load_config(model)
    facts = data_facts(model, data, max_length, goal)
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    budget = round(memory_gb if memory_gb is not None else machine_memory_gb(dev), 1)
    autocast = dev == "cuda" or cpu_has_bf16()
    pairs = goal == "alignment"  # DPO forwards chosen and rejected together, through the model's full logits
    spec = StepSpec(batch_size=batch_size * (2 if pairs else 1), autocast=autocast, device=dev,
                    gradient_checkpointing=gradient_checkpointing, chunked_loss=not pairs)
    tp = device_throughput(dev, Arch.from_config(config), batch_size * facts.shape.p90, autocast, budget)
    rows = method_table(config, facts.shape, spec, budget, tp)
    fits = frozenset(r.method for r in rows if r.fits)
    w = walk(Facts(goal, facts.shape.rows, fits, facts.answer_p50, facts.distinct_answers, dev, budget))
    method = _choose(w.leaf, rows)
    reasons = [f"the map ends at {w.leaf}, {NODES[w.leaf].english}"]
    notes = _notes(goal, method, rows, facts, budget, time_s, few_shot_k)
    if pairs:
        notes.append("DPO: estimated as chosen + rejected rows in one micro-batch with full logits; the frozen "
                     "reference forward saves nothing for backward")
    if goal == "reasoning":
        notes.append("GRPO: the table is the SFT-path estimate for the prompts; sampling num_generations "
                     "completions adds their KV cache and tokens on top")
    if dev == "cpu" and allocator.for_training() == "glibc":
        notes.append("memory estimates assume tcmalloc, which ftatlas train preloads when installed; training "
                     "here runs on glibc malloc, whose retained heap measured 0-2x the estimated activations "
                     f"and loss buffers on top, varying run to run (install: {allocator.INSTALL_HINT})")
    if method == "none" and w.leaf not in ("M", "N"):
        reasons.append(f"none of {', '.join(leaf_methods(w.leaf))} fits in {budget:g} GB")
    elif method != "none":
        r = next(r for r in rows if r.method == method)
        reasons.append(f"{method} is the first of {', '.join(leaf_methods(w.leaf))} that fits: "
                       f"{r.estimate.peak_bytes / 1e9:.2f} GB estimated peak of {budget:g} GB")
    return Advice(goal, model, dev, budget, tp, facts, rows, w, method, reasons, notes, spec)


def _notes(goal: str, method: str, rows: list[Row], facts: DataFacts, budget: float, time_s: float | None,
           k: int) -> list[str]:
    """The seeds' cost questions and warnings, with numbers."""
    notes = []
    if not any(r.fits for r in rows):
        sized = [r for r in rows if r.estimate is not None]
        if sized:
            small = min(sized, key=lambda r: r.estimate.peak_bytes)
            notes.append(f"nothing fits in {budget:g} GB; smallest option is {small.method} at "
                         f"{small.estimate.peak_bytes / 1e9:.2f} GB; consider RAG/ICL or a smaller model")
        else:
            notes.append(f"nothing fits in {budget:g} GB; consider RAG/ICL or a smaller model")
    few = k * facts.prompt_tokens_mean
    notes.append(f"tokens per request: a fine-tuned model is sent ~{facts.query_tokens_mean:.0f} prompt tokens; "
                 f"{k}-shot prompting sends ~{few + facts.query_tokens_mean:.0f} (saves ~{few:.0f} tokens, "
                 f"{few / max(facts.query_tokens_mean, 1):.1f}x the prompt, on every request)")
    need = METHODS.get(method).min_rows
    if method != "none" and facts.shape.rows < need:
        notes.append(f"{facts.shape.rows} training rows is little for {method} (we suggest >= {need}): "
                     "expect overfitting; prefer LoRA/BitFit with few epochs, or RAG/few-shot")
    if time_s is not None and method != "none":
        r = next(r for r in rows if r.method == method)
        if r.epoch_seconds > time_s:
            notes.append(f"one epoch of {method} is estimated at {r.epoch_seconds / 60:.0f} min, over the "
                         f"--time budget of {time_s / 60:.0f} min: cut data.max_train or use max_steps")
    if facts.truncated:
        notes.append(f"{facts.truncated} rows were longer than max_length and are truncated")
    return notes

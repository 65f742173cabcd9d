"""The recipe: one YAML file (validated by pydantic) that drives a run, plus dotted key=value overrides.

Validation is two-step for the axes. Here, step one: the structure, with each axis a name plus a free block.
Step two is ``ftatlas.resolve``: ``method.name`` picks a registered module, the rest of the ``method`` block is
validated against that module's own ``Params`` (``extra="forbid"``, so LoRA fields cannot appear in a freeze
run), and the result is kept on the recipe (``Recipe.axes``). This module imports no axis: the axes import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ftatlas.data.sources import DatasetSource
from ftatlas.eval_spec import DecodeSpec, EvalSpec, JudgeSpec, Strict  # noqa: F401 - re-exported: the eval block

DEFAULT_LR = 2e-4  # train.lr: auto for a method whose Params declare no default_lr (LoRA's rate)


class ModelSpec(Strict):
    name: str = Field("smollm2-135m", description="hub id, local HF dir, .gguf file, or alias smollm2-135m")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the loaded weights; auto = fp32 master weights (+ autocast, see train)")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto picks cuda, mps, then cpu")
    template: str | None = Field(None, description="chat template override: chatml, plain, a .jinja file or Jinja")


class DataSpec(Strict):
    builtin: str | None = Field(None, description="built-in dataset name (e.g. contacts); replaces train/eval")
    train: str | DatasetSource | None = Field(
        None, description="training file (.jsonl, .json, .txt, .parquet, .csv, .arrow), a folder of them, a "
        "datasets source {path, name, split, revision, data_files, streaming, columns}, or a mixture spec (.yaml, "
        "see `ftatlas data mix`)")
    eval: str | DatasetSource | None = Field(
        None, description="held-out file or datasets source; if absent, eval_split of train is held out")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "text", "trl", "kto"] = Field(
        "auto", description="row format; trl/kto (and alpaca/sharegpt pairs) for preference objectives")
    eval_split: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of train held out when eval is absent")
    max_length: int = Field(1024, ge=8, description="tokens per example; longer rows are truncated (counted)")
    train_on: Literal["assistant", "all", "last_assistant"] = Field(
        "assistant", description="which tokens carry loss")
    max_train: int | None = Field(None, ge=1, description="use only the first N training rows")
    seed: int = Field(0, description="seed for the eval split shuffle")
    template: Literal["as_written", "chat"] = Field(
        "as_written", description="chat: standard-form preference prompts (plain strings) become a user message, "
                                  "so the model's chat template is applied to them")
    cache_tokenized: bool = Field(True, description="keep tokenized rows in an Arrow cache (datasets.map), keyed by "
                                  "rows, tokenizer, template, max_length and train_on; reruns skip it (sft, "
                                  "pretrain and the preference objectives on TRL trainers)")
    cache_dir: str | None = Field(None, description="folder of that cache; default <datasets cache>/ftatlas-tokenized")

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.builtin is None and self.train is None:
            raise ValueError("set data.builtin (e.g. contacts) or data.train (a file)")
        if self.builtin is not None and (self.train is not None or self.eval is not None):
            raise ValueError("data.builtin brings its own train/eval splits; drop data.train/data.eval")
        return self


class AxisSpec(BaseModel):
    """``{name: ..., <params of that module>}``; params are checked against the module's Params."""

    model_config = ConfigDict(extra="allow")
    name: str

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainSpec(Strict):
    epochs: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="passes over the training set (ignored when max_steps > 0); auto = whole epochs until "
        "the model has trained on ~8k loss-carrying tokens (1 to 10 epochs, at most 2000 steps), with early "
        "stopping on held-out loss (objectives/budget.py)")
    max_steps: int = Field(-1, description="optimizer steps; -1 = use epochs")
    lr: Annotated[float, Field(gt=0, lt=1)] | Literal["auto"] = Field(
        "auto", description="peak learning rate; auto = the method's default (its Params.default_lr: 2e-4 for "
        "LoRA, 5e-5 full, 1e-2 to 1e-1 for the methods that train few parameters)")
    early_stopping: bool | Literal["auto"] = Field(
        "auto", description="stop when held-out loss has not improved for `patience` evaluations and restore the "
        "best weights (transformers' EarlyStoppingCallback + load_best_model_at_end); auto = on with epochs: auto "
        "and max_steps unset, off when the budget is explicit")
    patience: int = Field(3, ge=1, description="early stopping: evaluations without improvement before stopping")
    eval_loss_rows: int | None = Field(
        64, ge=1, description="held-out rows the eval-loss passes score (the first N; None = all); generation "
        "metrics after training still use the whole held-out split")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts",
                       "polynomial", "inverse_sqrt"] = Field("cosine", description="learning-rate schedule")
    warmup: float = Field(0.05, ge=0, description="warmup: fraction of steps if < 1, else a step count")
    batch_size: int = Field(8, ge=1, description="examples per micro-batch")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    seed: int = Field(42, description="seed for init, shuffling and dropout")
    precision: Literal["auto", "bf16", "fp32", "fp16"] = Field(
        "auto", description="auto = bf16 autocast on CUDA/CPUs with bf16, else fp32")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto", description="recompute activations in the backward to save memory; auto = on only where the "
        "advisor's estimate of the peak without it exceeds 80% of the memory available (memory_budget_gb or what "
        "the device has free), never for prefix (its prefixes live in the KV cache); decision and reason logged")
    memory_budget_gb: float | None = Field(
        None, gt=0, description="memory this run may use, for gradient_checkpointing: auto; default = the device's "
        "available memory when training starts (CPU: MemAvailable plus this process's resident set)")
    packing: Literal["off", "padding_free", "best_fit"] = Field(
        "padding_free", description="sft: off = right-padded batches; padding_free = each micro-batch's rows end "
        "to end in one row, no padding, attention kept per sequence; best_fit = the same, with micro-batches "
        "grouped by a token budget (pack_tokens) instead of batch_size")
    packed_attention: Literal["varlen", "mask"] = Field(
        "varlen", description="packed rows: varlen = causal SDPA per sequence; mask = transformers' dense "
        "block-diagonal mask (T x T work; for other attention implementations)")
    pack_tokens: int | None = Field(
        None, ge=8, description="best_fit token budget per micro-batch; default batch_size x mean row length")
    pad_multiple: int = Field(
        64, ge=1, description="sft: round each packed micro-batch (with a filler sequence that carries no loss) "
        "and the chunked loss's rows up to a multiple of this many tokens, so shapes repeat from step to step and "
        "shape-keyed kernels (oneDNN on CPU) are reused instead of rebuilt and cached anew: resident memory stops "
        "climbing after the first steps (the filler is extra work on short micro-batches, ~6% at ~700 tokens); "
        "1 = off. Padded batches (packing off, prompt-learning methods) round their width to a power of two of at "
        "most a quarter of the longest row, capped by this")
    chunked_loss: bool = Field(
        True, description="sft: cross-entropy through the LM head in row chunks, never the full logits "
        "(prompt-learning methods included; falls back to the model's loss for a LoRA'd head)")
    loss_chunk: int = Field(256, ge=16, description="rows of logits formed at a time by chunked_loss (each holds "
                            "rows x vocab in fp32 and bf16: 72 MiB at 256 rows of a 49k vocab)")
    frozen_half: bool = Field(
        True, description="PEFT methods under bf16/fp16 autocast: keep the frozen base linear weights in that "
        "dtype (the values autocast would use; no per-step casts, half their memory); trained weights stay fp32")
    compile: bool = Field(False, description="torch.compile each decoder block (regional); pays off on long runs")
    optim: Literal["adamw", "paged_adamw_8bit"] = Field(
        "adamw", description="optimizer; paged_adamw_8bit (bitsandbytes) needs CUDA")
    liger: bool = Field(False, description="Liger Triton kernels (RMSNorm/RoPE/SwiGLU/fused CE); needs CUDA")
    log_every: int = Field(5, ge=1, description="steps between metrics.jsonl lines")
    eval_every: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="steps between eval-loss passes; 0 = at the end only; auto = ~10 passes over "
        "the budget (at most 2 an epoch) with early stopping, else 0")
    save_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = only the final model")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    report_to: list[str] = Field(
        default_factory=list, description="experiment trackers the Trainer reports to (tensorboard, mlflow, wandb, "
        "trackio, ...); metrics.jsonl is written either way")
    experiment: str | None = Field(
        None, description="MLflow experiment (W&B/trackio project); default: the folder name of output.dir")
    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///<output.dir>/mlflow.db")
    distributed: Literal["none", "ddp", "fsdp", "zero2", "zero3", "zero3_offload"] = Field(
        "none", description="multi-process preset written to the run dir (accelerate config + DeepSpeed/FSDP "
        "settings); start the processes with torchrun or accelerate launch. zero* presets need DeepSpeed on CUDA")
    distributed_config: str | None = Field(
        None, description="your own DeepSpeed JSON or FSDP settings (YAML/JSON) instead of the preset's")

    @field_validator("report_to", mode="after")
    @classmethod
    def _known_trackers(cls, v: list[str]) -> list[str]:
        from ftatlas.objectives.tracking import check_trackers

        return check_trackers(v)


class OutputSpec(Strict):
    dir: str = Field("runs", description="parent folder of run directories")
    name: str | None = Field(None, description="run name; default <method>-<objective>-<timestamp>")
    overwrite: bool = Field(False, description="allow reusing an existing run directory")


class Recipe(Strict):
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec
    method: AxisSpec = Field(default_factory=lambda: AxisSpec(name="lora"))
    objective: AxisSpec = Field(default_factory=lambda: AxisSpec(name="sft"))
    context: AxisSpec = Field(default_factory=lambda: AxisSpec(name="zero_shot"))
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("method", "objective", "context", mode="before")
    @classmethod
    def _name_only(cls, v: Any) -> Any:
        return _axis_block(v)  # `method: lora` is short for `{name: lora}`; context also takes `mode:`

    _axes: ResolvedAxes | None = PrivateAttr(None)

    @property
    def axes(self) -> ResolvedAxes:
        """Each axis' registered class and validated params, set by ``ftatlas.resolve.resolve``."""
        if self._axes is None:
            raise RecipeError("this recipe's axes are not resolved: build it with ftatlas.resolve.build_recipe or "
                              "load_recipe (or pass it through ftatlas.resolve.resolve)")
        return self._axes

    def method_params(self) -> BaseModel:
        return self.axes.method.params

    def objective_params(self) -> BaseModel:
        return self.axes.objective.params

    def context_params(self) -> BaseModel:
        return self.axes.context.params

    def learning_rate(self) -> float:
        """``train.lr``, with ``auto`` resolved to the method's own default (``Params.default_lr``)."""
        if self.train.lr != "auto":
            return float(self.train.lr)
        return float(getattr(self.axes.method.entry.Params, "default_lr", DEFAULT_LR))

    def checkpointing(self) -> bool:
        """Whether training recomputes activations where no memory estimate decides (``gradient_checkpointing:
        auto`` is decided from memory in ``ftatlas.memory_plan``; this is its fallback): an explicit value, else
        on for every training method that allows it."""
        if self.train.gradient_checkpointing != "auto":
            return bool(self.train.gradient_checkpointing)
        method = self.axes.method.entry
        return method.trains and method.checkpointing


@dataclass(frozen=True)
class ResolvedAxis:
    """One axis of a recipe: the class its name picked from the registry and its block validated by its Params."""

    entry: Any  # the registered Method / Objective / Context subclass
    params: BaseModel


@dataclass(frozen=True)
class ResolvedAxes:
    method: ResolvedAxis
    objective: ResolvedAxis
    context: ResolvedAxis


class RecipeError(ValueError):
    """A recipe that does not validate; the message lists each bad field path."""


def format_errors(err: ValidationError, prefix: str = "", root: type[BaseModel] | None = None) -> str:
    """One line per problem: ``train.scheduler: Input should be 'linear', 'cosine', ... (got 'foo')``."""
    lines: list[str] = []
    merged: dict[str, int] = {}  # a union field (e.g. `float | "auto"`) fails once per member: one line for all
    for e in err.errors():
        path = tuple(p for p in e["loc"] if not _UNION_MEMBER.search(str(p)))
        loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + path)
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key{_allowed_keys(e['loc'], root or Recipe)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = f" (got {e['input']!r})" if e["type"] not in ("missing", "value_error") else ""
            if len(path) < len(e["loc"]) and loc in merged:
                i = merged[loc]
                lines[i] = lines[i].removesuffix(got) + f", or {msg[0].lower()}{msg[1:]}{got}"
                continue
            merged[loc] = len(lines)
            named = not loc or msg.startswith(f"{loc} ")  # axis messages already start with their path
            lines.append(f"{msg}{got}" if named else f"{loc}: {msg}{got}")
    return "\n".join(lines)


_UNION_MEMBER = re.compile(r"^(constrained-|literal\[|function-)|^(int|float|bool|str)$")


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> str:
    """The keys allowed next to an unknown key, found by walking the models along ``loc``."""
    model: Any = root
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return ""
        model = field.annotation
    keys = [k for k in model.model_fields if k != "name"] if model is AxisSpec else list(model.model_fields)
    return f"; allowed: {', '.join(keys)}"


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", "method.r=8"]`` -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(f"override {item!r} is not key=value (e.g. train.lr=1e-4)")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {item!r} conflicts with an earlier override of {p!r}")
        node[leaf] = _scalar(raw)
    return out


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _scalar(raw: str) -> Any:
    """YAML typing for override values, plus ``1e-4`` as a float (YAML 1.1 would keep it a string)."""
    if not raw:
        return ""
    return float(raw) if _FLOAT.match(raw) else yaml.safe_load(raw)


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


AXIS_DEFAULTS = {"method": "lora", "objective": "sft", "context": "zero_shot"}


def _axis_block(v: Any) -> Any:
    """``lora`` -> ``{name: lora}``; ``{mode: rag, ...}`` -> ``{name: rag, ...}`` (the context axis' spelling)."""
    if isinstance(v, str):
        return {"name": v}
    if isinstance(v, dict) and "mode" in v and "name" not in v:
        return {"name": v["mode"], **{k: x for k, x in v.items() if k != "mode"}}
    return v


def _expand_axes(data: dict[str, Any], defaults: bool) -> dict[str, Any]:
    """``method: lora`` -> ``{name: lora}``; with ``defaults``, absent axes get their default name."""
    out = dict(data)
    for axis, default in AXIS_DEFAULTS.items():
        if axis in out:
            out[axis] = _axis_block(out[axis])
        elif defaults:
            out[axis] = {"name": default}
    return out


def recipe_data(data: dict[str, Any], overrides: list[str] | None = None) -> dict[str, Any]:
    """The recipe mapping with the overrides merged in and each axis in its long form ``{name: ..., ...}``."""
    # Expand short forms on both sides first, so `method.r=8` on `method: lora` (or on no method block,
    # i.e. the default lora) adds a parameter instead of replacing the name.
    base = _expand_axes(data, defaults=True)
    extra = _expand_axes(parse_overrides(overrides or []), defaults=False)
    for axis in AXIS_DEFAULTS:  # switching to another method drops the old one's params
        block = extra.get(axis)
        new_name = block.get("name") if isinstance(block, dict) else None
        if new_name is not None and new_name != base[axis].get("name"):
            base[axis] = {}
    return deep_merge(base, extra)


def parse_recipe(data: dict[str, Any], overrides: list[str] | None = None, source: str = "recipe") -> Recipe:
    """Step one: the recipe's structure, with its axes' names and blocks unchecked (``ftatlas.resolve`` checks them)."""
    merged = recipe_data(data, overrides)
    try:
        return Recipe.model_validate(merged)
    except ValidationError as e:
        raise RecipeError(f"{source}: invalid recipe\n{format_errors(e)}") from None


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML recipe file; a RecipeError for a missing file, bad YAML or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping (model:, data:, method:, ...)")
    return data


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def __getattr__(name: str) -> Any:
    """``build_recipe`` / ``load_recipe`` live in ``ftatlas.resolve`` (they import the axes); reached through
    this module on first use so importing ``ftatlas.recipe`` itself stays free of any axis."""
    if name in ("build_recipe", "load_recipe"):
        from ftatlas import resolve

        return getattr(resolve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

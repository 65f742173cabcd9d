"""Peak memory and time of one training step of a method, from the model config, the data's lengths and the batch.

Parameters, gradients and optimizer states come from ``methods.memory.estimate_memory`` (exact counts from a
meta-device build). This module adds what that leaves out, modelled on ftatlas's own SFT path
(objectives/sft.py): padding-free packing (a micro-batch is its rows end to end, so its tokens are
``batch_size x`` the row length), per-sequence attention (no ``T x T`` mask), and chunked cross-entropy
(models/chunked_ce.py: logits only for loss rows, ``loss_chunk`` rows at a time; prompt-learning methods too);
packed rows and loss rows are rounded up to ``train.pad_multiple`` (data/packing.py says why).

Activations saved for backward, per token and decoder layer (``a`` = bytes of the autocast dtype, ``r`` = bytes
of the fp32 residual stream; Llama-style block, SwiGLU MLP, grouped-query attention):

* two RMSNorms: the input of each (``r*h``), plus the normalised tensor when the norm weights train (``r*h``);
* the autocast copy of each norm output fed to the projections (``a*h`` twice);
* attention: q (``a*hq``), k and v (``a*kv`` each), the per-sequence outputs, their concatenation and the
  o_proj input (``3*a*hq``) -> ``a*(4*hq + 2*kv)``; padded batches run one attention call over the batch, so
  there is no concatenation: ``a*(3*hq + 2*kv)``;
* MLP: gate, silu(gate), up and their product (``4*a*i``);
* adapters: a LoRA-style module saves its dropout output (``a*in``, if dropout > 0) and its low-rank
  intermediate (``a*r``).

Only layers that gradients flow through save anything (a frozen lower stack under ``freeze`` saves nothing).
PEFT methods under autocast store their frozen linears in bf16 (``train.frozen_half``, models/frozen.py): 2
bytes each and no per-forward copies. Gradient checkpointing keeps each layer's input (``r*h``) plus one
layer's full set while it is recomputed. Under autocast, the bf16 casts of trainable linear weights stay cached
until the forward ends (``2`` bytes/param); without checkpointing, the casts of every linear weight in those
layers are kept for backward. Peak = weights + optimizer states + the largest of the forward's end (autocast
copies + activations + loss buffers), the backward (one block's casts while it is recomputed, or the saved
casts without checkpointing, + the larger of activations and gradients + the tied head/embedding gradient
formed with the loss + the top block's gradient temporaries) and the optimizer step (gradients and one
parameter's temporaries); ``StepEstimate.phases`` holds the three, ``peak_phase`` names the largest.

Time: FLOPs per token = forward ``2N`` (N = matmul parameters of the layers + the LM head for loss rows)
+ causal attention ``2*L*hq*s``; backward ``2x`` forward through layers whose weights train, ``1x`` through
frozen layers gradients flow through (input gradients only), nothing below; checkpointing adds a
forward. Seconds per step = a x FLOPs / the device's measured matmul rate at the model's shapes
+ b x elementwise traffic (op count x one fp32 hidden-wide row per token) / the measured memory bandwidth
+ c x the loss buffers / bandwidth + d; (a, b, c, d) are the device's calibration in ``advise/probes.py``
(CALIBRATION says where they come from).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig

from ftatlas.data.packing import padded_width, round_up
from ftatlas.methods import METHODS
from ftatlas.methods.memory import MemoryEstimate, _meta_safe, base_weight_bytes, estimate_memory
from ftatlas.models.chunked_ce import vocab_slice_rows

# What training adds to a CPU process beyond the modelled tensors (autograd engine and its threads, oneDNN kernel
# caches, optimizer and Trainer state, pages tcmalloc keeps in its caches): a constant plus a part per decoder
# layer; and the backward's gradient temporaries: the top block's backward allocates them while nearly every saved
# activation is still held, and the heap cannot place them in what the forward freed. They are counted as rows of
# ``tokens x (hidden + intermediate)`` fp32, plus rows of ``tokens x`` the inputs of the LoRA-style modules of a
# layer (their input gradients through the adapter path) and the widths IA3 scales (its fp32 products). Fitted
# together on three bench/advisor_accuracy.py runs (75 rows: SmolLM2-135M with 30 layers, tiny configs with 2 and
# 4; all within 15%, median 3%, worst 11%) on tcmalloc with pad_multiple 64, loss_chunk 256, the loss buffers kept
# in a workspace, the head cast a slice at a time and the baseline taken after the heap's free pages are returned
# (advise/probes.py), peak from VmHWM; README's Accuracy table is a later run. glibc malloc keeps more, and a
# varying amount (ftatlas/allocator.py); CUDA's max_memory_allocated does not see such costs.
RUNTIME_BYTES = {"cpu": 43 * 2**20, "cuda": 0}
RUNTIME_BYTES_PER_LAYER = {"cpu": int(0.35 * 2**20), "cuda": 0}
BACKWARD_TEMP_ROWS = {"cpu": 0.5, "cuda": 0.0}
BACKWARD_ADAPTER_ROWS = {"cpu": 3.0, "cuda": 0.0}
# Op counts for the elementwise term (Llama block forward: norms, projections, RoPE, attention, MLP, residuals;
# backward about twice; a LoRA-style module adds dropout, two matmuls, scale and add; AdamW per tensor).
OPS_PER_LAYER = 40
OPS_PER_ADAPTER = 3 * 5
OPS_PER_TENSOR_UPDATE = 12
_LAYER = re.compile(r"layers\.(\d+)\.")


@dataclass(frozen=True)
class Arch:
    """The shape numbers of a decoder-only transformer that the estimates need."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> Arch:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(config.num_hidden_layers, config.hidden_size, config.intermediate_size, heads,
                   getattr(config, "num_key_value_heads", None) or heads, head_dim, config.vocab_size,
                   bool(getattr(config, "tie_word_embeddings", False)))

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def layer_linear_params(self) -> int:
        """q, k, v, o, gate, up, down weights of one block."""
        h = self.hidden
        return h * (self.q_dim + 2 * self.kv_dim) + self.q_dim * h + 3 * h * self.intermediate


@dataclass(frozen=True)
class DataShape:
    """Token lengths of the training rows after templating (what packing puts end to end)."""

    rows: int
    mean: float
    p50: int
    p90: int
    p99: int
    max: int
    loss_share: float = 1.0

    @classmethod
    def from_lengths(cls, lengths: list[int], loss_tokens: int | None = None) -> DataShape:
        if not lengths:
            raise ValueError("no rows to estimate from")
        s = sorted(lengths)

        def pct(q: float) -> int:
            return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]

        total = sum(s)
        share = loss_tokens / total if loss_tokens is not None and total else 1.0
        return cls(len(s), total / len(s), pct(0.5), pct(0.9), pct(0.99), s[-1], share)


@dataclass(frozen=True)
class StepSpec:
    """The training settings that change memory and time (mirrors recipe TrainSpec fields)."""

    batch_size: int = 8
    autocast: bool = True  # bf16 autocast over fp32 master weights
    gradient_checkpointing: bool | None = None  # None: ftatlas' default, on where the method allows it
    chunked_loss: bool = True
    loss_chunk: int = 256
    optimizer: str = "adamw"
    device: str = "cpu"
    frozen_half: bool = True  # train.frozen_half: PEFT's frozen linears stored in the autocast dtype
    pad_multiple: int = 64  # train.pad_multiple: packed rows and loss rows rounded up to a multiple of this


@dataclass(frozen=True)
class Throughput:
    """Measured (or tabled) device rates: matmul FLOP/s at the model's shapes and memory bytes/s."""

    flops: float
    bandwidth: float
    source: str = "measured"
    slowdown: float = 1.0  # calibration: real training time per modelled matmul second
    step_overhead: float = 0.0  # seconds per optimizer step the Trainer spends outside the model
    elementwise_slowdown: float = 1.0  # calibration: seconds per modelled second of token-wide elementwise traffic
    loss_slowdown: float = 1.0  # calibration: seconds per modelled second of reading the loss buffers once


@dataclass
class StepEstimate:
    method: str
    params: MemoryEstimate
    tokens: int  # tokens in the largest micro-batch
    base_bytes: int  # the base model as loaded (before the method adds anything)
    parts: dict[str, int] = field(default_factory=dict)  # activations, autocast copies, loss, opt temp
    peak_bytes: int = 0
    flops_per_token: float = 0.0
    elementwise_bytes_per_token: float = 0.0  # ops_per_step x one fp32 hidden-wide row each: norms, casts, adapters
    ops_per_step: int = 0  # tensor ops launched per step (forward, backward, optimizer)
    filler_tokens: float = 0.0  # mean filler a packed micro-batch is rounded up by (train.pad_multiple)
    phases: dict[str, int] = field(default_factory=dict)  # bytes above the weights: forward, backward, optimizer

    @property
    def peak_phase(self) -> str:
        """The step phase the peak falls in (``forward``, ``backward`` or ``optimizer``)."""
        return max(self.phases, key=self.phases.get) if self.phases else "forward"

    @property
    def activation_bytes(self) -> int:
        return self.parts["activations"]

    def seconds_per_step(self, tp: Throughput, tokens: int | None = None) -> float:
        """At ``tokens`` real tokens per micro-batch (default: the largest); packed filler is added on top."""
        n = tokens + self.filler_tokens if tokens is not None else self.tokens
        scale = n / max(self.tokens, 1)
        return (n * self.flops_per_token / tp.flops * tp.slowdown
                + n * self.elementwise_bytes_per_token / tp.bandwidth * tp.elementwise_slowdown
                + self.parts["loss"] * scale / tp.bandwidth * tp.loss_slowdown
                + tp.step_overhead)

    def seconds_per_epoch(self, tp: Throughput, data: DataShape, batch_size: int) -> float:
        steps = -(-data.rows // batch_size)
        tokens = data.rows * data.mean
        return steps * self.seconds_per_step(tp, round(tokens / steps))


@dataclass(frozen=True)
class _Layout:
    """Where gradients flow and what trains, read off the method applied to a meta model."""

    first_grad_layer: int  # lowest block that saves activations (layers if none)
    norms_train: bool
    weights_train_layers: int  # blocks whose big linear weights train (full/freeze)
    head_trains: bool
    packable: bool
    adapter_in_features: int  # sum of in_features + rank of LoRA-style modules per layer (per token)
    largest_trainable: int
    adapter_modules: int = 0
    trainable_tensors: int = 0
    peft: bool = False
    frozen_linear_params: int = 0  # plain nn.Linear weights/biases that stay frozen (the LM head excluded)
    trainable_linear_params: int = 0  # nn.Linear weights that train (the LM head excluded): autocast caches casts
    adapter_inputs: int = 0  # per layer: in_features of LoRA-style modules, IA3's scaled widths


def _layout(config: PretrainedConfig, method: str, params: BaseModel, arch: Arch) -> _Layout:
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    entry = METHODS.get(method)
    model = entry().apply_on_meta(model, _meta_safe(params))
    first = arch.layers
    norms = head = False
    weight_layers: set[int] = set()
    largest = tensors = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        largest = max(largest, p.numel())
        tensors += 1
        m = _LAYER.search(name)
        if m:
            first = min(first, int(m.group(1)))
            if "norm" in name:
                norms = True
            elif p.dim() == 2 and "lora_" not in name and p.numel() >= arch.hidden * arch.kv_dim:
                weight_layers.add(int(m.group(1)))
        elif ("embed" in name or "lm_head" in name) and "prompt_encoder" not in name:  # not a virtual-token table
            head = head or p.dim() == 2
            first = 0 if "embed" in name else first
    if entry.prompt_learning:
        first = 0  # virtual tokens enter below the first block
    adapter = modules = inputs = 0
    dropout = getattr(params, "dropout", 0.0) or 0.0
    for mod in model.modules():
        ranks = getattr(mod, "r", None)
        base = getattr(mod, "base_layer", None)
        if isinstance(ranks, dict) and isinstance(base, nn.Linear) and ranks:
            r = next(iter(ranks.values()))
            adapter += r + (base.in_features if dropout > 0 else 0)
            inputs += base.in_features
            modules += 1
        elif hasattr(mod, "ia3_l") and isinstance(base, nn.Linear):  # IA3 scales the input (MLP) or the output
            inputs += base.in_features if getattr(mod, "is_feedforward", False) else base.out_features
    head_module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    frozen_linear = sum(p.numel() for mod in model.modules() if type(mod) is nn.Linear and mod is not head_module
                        for p in mod.parameters(recurse=False) if not p.requires_grad)
    trainable_linear = sum(mod.weight.numel() for mod in model.modules()
                           if isinstance(mod, nn.Linear) and mod is not head_module and mod.weight.requires_grad)
    packable = entry.supports_packing  # else padded batches
    return _Layout(first, norms, len(weight_layers), head, packable, adapter // max(arch.layers, 1), largest,
                   modules, tensors, hasattr(model, "peft_config"), frozen_linear, trainable_linear,
                   inputs // max(arch.layers, 1))


def _base_bytes(config: PretrainedConfig, method: str, weight_bytes: int, mem: MemoryEstimate) -> int:
    """Bytes of the base model as the method loads it: 4-bit linears for a quantized base (qlora), else every
    weight at weight_bytes."""
    if METHODS.get(method).quantized_base:
        return mem.frozen_bytes
    return base_weight_bytes(config, weight_bytes)


def activation_bytes_per_token_layer(arch: Arch, act: int, resid: int, norms_train: bool, adapter: int,
                                     packed: bool = True) -> int:
    """Bytes one block saves for backward per token (see the module docstring for each term)."""
    h, hq, kv, i = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    norms = 2 * resid * h * (2 if norms_train else 1)
    return norms + act * (2 * h + (4 if packed else 3) * hq + 2 * kv + 4 * i + adapter)


def estimate_step(config: PretrainedConfig, method: str, data: DataShape, step: StepSpec,
                  params: BaseModel | dict[str, Any] | None = None) -> StepEstimate:
    """Peak bytes and per-token work of one training step of ``method`` on batches of ``data``'s rows."""
    entry = METHODS.get(method)
    checkpointing = entry.checkpointing if step.gradient_checkpointing is None else step.gradient_checkpointing
    p = params if isinstance(params, BaseModel) else entry.Params(**(params or {}))
    arch = Arch.from_config(config)
    mem = estimate_memory(config, method, p, weight_bytes=4, optimizer=step.optimizer)
    lay = _layout(config, method, p, arch)
    act = 2 if step.autocast else 4
    resid = 4
    # With checkpointing, transformers makes the embedding output require grad (enable_input_require_grads), so
    # input gradients flow through every block, even a frozen lower stack (freeze), and each block is recomputed.
    grad_layers = arch.layers if checkpointing else arch.layers - lay.first_grad_layer
    # SFT packs (and rounds the row up by a filler) where it chunks the loss; the advisor's chunked_loss=False
    # stands for DPO's padded pairs, and prompt-learning methods train on padded batches (packing.padded_width)
    packed = lay.packable and step.chunked_loss
    m = max(1, step.pad_multiple)
    # the largest micro-batches set the peak: packed, p90-long rows; padded, the batch holding the longest row
    width = data.p90 if packed else padded_width(data.max, m)
    loss_rows = max(1, round(step.batch_size * data.p90 * data.loss_share))
    loss_rows = round_up(loss_rows, m) if step.chunked_loss else loss_rows  # each chunk's rows rounded up
    tokens = step.batch_size * width
    tokens = round_up(tokens, m) if packed else tokens
    if entry.prepends_tokens:  # virtual tokens enter every row (no loss on them)
        tokens += step.batch_size * int(getattr(p, "num_virtual_tokens", 0) or 0)
    per_layer = activation_bytes_per_token_layer(arch, act, resid, lay.norms_train, lay.adapter_in_features,
                                                 packed)
    if checkpointing:
        activations = tokens * (grad_layers * resid * arch.hidden + (per_layer if grad_layers else 0))
    else:
        activations = tokens * grad_layers * per_layer
    half = step.autocast and step.frozen_half and lay.peft and not entry.quantized_base  # models/frozen.py
    # Autocast caches the bf16 cast of every trainable linear weight until the forward ends; without
    # checkpointing, the casts of every linear that gradients flow through are saved for backward as well; with
    # it, one block's casts live while that block is recomputed.
    if not step.autocast or entry.quantized_base:
        copies = 0
    elif half:  # frozen linears already hold the bf16 values: stored at 2 bytes, nothing re-cast per forward
        copies = 2 * lay.trainable_linear_params
    elif checkpointing:
        copies = 2 * (lay.trainable_linear_params + (arch.layer_linear_params if grad_layers else 0))
    else:
        copies = 2 * max(grad_layers * arch.layer_linear_params, lay.trainable_linear_params)
    vh = arch.vocab * arch.hidden
    if step.chunked_loss:  # one vocab slice of the head cast at a time; the workspace's two buffers all along
        c = min(step.loss_chunk, loss_rows)
        cast = act != 4  # fp32 head, bf16 matmuls: cast a slice at a time, logits upcast into a second buffer
        loss_transient = min(arch.vocab, vocab_slice_rows(arch.hidden, act)) * arch.hidden * act if cast else 0
        loss_kept = c * arch.vocab * (4 + (act if cast else 0))
        loss_saved = 2 * loss_rows * arch.hidden * 4 + (vh * 4 if lay.head_trains else 0)
        head_rows = loss_rows
    else:  # the model's own loss: bf16 logits, their fp32 upcast, log-softmax and its gradient
        loss_transient = tokens * arch.vocab * (act + 12)
        loss_saved = loss_kept = 0
        head_rows = tokens
    head_grad = vh * 4 if lay.head_trains else 0
    # The autocast cache is cleared when the forward (loss included) leaves autocast, before the backward, so
    # the cached casts never meet the weight gradients; the backward re-casts one block at a time when it
    # recomputes (checkpointing), and without checkpointing the casts saved for backward are freed as it goes.
    forward = copies + activations + loss_saved + loss_transient + loss_kept
    bwd_copies = copies if not checkpointing else (2 * arch.layer_linear_params if copies and grad_layers else 0)
    bwd_temp = (BACKWARD_TEMP_ROWS.get(step.device, 0.0) * (arch.hidden + arch.intermediate)
                + BACKWARD_ADAPTER_ROWS.get(step.device, 0.0) * lay.adapter_inputs) * tokens * 4 if grad_layers else 0
    backward = bwd_copies + max(activations, mem.grad_bytes - head_grad) + head_grad + loss_saved + loss_kept \
        + bwd_temp
    opt_temp = 2 * lay.largest_trainable * 4 if mem.trainable_params else 0
    opt_step = mem.grad_bytes + opt_temp + loss_kept
    base = _base_bytes(config, method, 4, mem)
    static = mem.frozen_bytes + mem.trainable_bytes + mem.optimizer_bytes
    static -= 2 * lay.frozen_linear_params if half else 0
    runtime = RUNTIME_BYTES.get(step.device, 0) + arch.layers * RUNTIME_BYTES_PER_LAYER.get(step.device, 0)
    peak = static + max(forward, backward, opt_step) + runtime
    # work per token
    layer_fwd = 2 * arch.layer_linear_params + 2 * arch.q_dim * data.mean  # causal attention over ~s/2 keys, x2
    fwd = arch.layers * layer_fwd + 2 * vh * head_rows / max(tokens, 1)
    train_w = lay.weights_train_layers
    bwd = (grad_layers + train_w) * layer_fwd + (2 if lay.head_trains else 1) * 2 * vh * head_rows / max(tokens, 1)
    if checkpointing:
        bwd += grad_layers * layer_fwd
    ops = arch.layers * OPS_PER_LAYER + grad_layers * 2 * OPS_PER_LAYER + lay.adapter_modules * OPS_PER_ADAPTER \
        + lay.trainable_tensors * OPS_PER_TENSOR_UPDATE
    phases = {"forward": int(forward), "backward": int(backward), "optimizer": int(opt_step)}
    parts = {"activations": int(activations), "autocast_copies": int(copies),
             "loss": int(loss_saved + loss_transient + loss_kept),
             "optimizer_temp": int(opt_temp), "runtime": runtime}
    return StepEstimate(method, mem, tokens, base, parts, int(peak), float(fwd + bwd), phases=phases,
                        elementwise_bytes_per_token=float(ops * arch.hidden * 4), ops_per_step=int(ops),
                        filler_tokens=(m - 1) / 2 if packed else 0.0)

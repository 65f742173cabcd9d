"""Chunked linear cross-entropy: the LM loss without ever holding the full ``tokens x vocab`` logits.

For SmolLM2 (49k vocab) the logits of one 8x1024 batch are 1.6 GB in fp32, several times over once
the loss upcasts, softmaxes and back-propagates them; they dominate activation memory and a good part
of step time. Here the hidden states of the loss-carrying positions only go through the LM head a
chunk of rows at a time; each chunk's loss *and* gradient (softmax - one-hot, a closed form) are
computed in the forward, so the backward is a multiply and nothing vocab-sized outlives its chunk.

Works on a plain transformers causal LM and on a PEFT-wrapped one: under module-injecting tuners (LoRA
and the rest) the decoder is called directly (adapters live inside its modules); prompt-learning models
(prefix/prompt/p-tuning rewrite the inputs in ``PeftModel.forward``) run their own forward with
``logits_to_keep=1`` while a hook takes the decoder's output. The frozen or trained LM head weight is
used as a plain matrix. A LoRA'd LM head, or heads with softcapping/scaling are not supported:
``split_lm`` returns None and the caller uses the model's own loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ftatlas.data.packing import round_up
from ftatlas.data.templating import IGNORE
from ftatlas.distributed import unwrap


class LossWorkspace:
    """The chunked loss's two vocab-wide buffers, kept from one call to the next (one per trainer).

    Allocated per call, they are the largest blocks a small-model step asks for (SmolLM2, 256 rows: 24 MiB of
    bf16 logits and 48 MiB of fp32), and between steps the heap hands pieces of the freed blocks to smaller
    requests, so a later step could need fresh ones: run to run, peak RSS then varied by one such block. Kept,
    they are allocated once and the peak is the same every run. ``release`` drops them (end of training)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def buffers(self, rows: int, vocab: int, dtype: torch.dtype,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits buffer in ``dtype``, fp32 buffer; the same tensor when ``dtype`` is fp32), ``rows x vocab``."""
        key = (rows, vocab, dtype, device)
        if self._buffers is None or self._key != key:
            self._buffers = None  # free the old pair before allocating the new one
            self._buffers = _allocate(rows, vocab, dtype, device)
            self._key = key
        return self._buffers

    def release(self) -> None:
        self._key, self._buffers = None, None


def _allocate(rows: int, vocab: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    low = torch.empty(rows, vocab, dtype=dtype, device=device)
    return low, low if dtype == torch.float32 else torch.empty(rows, vocab, dtype=torch.float32, device=device)


# Rows of the LM head cast to the matmul dtype at a time: the head weight is never cast whole (SmolLM2's would be a
# 54 MiB block allocated and freed every step, a 128k-vocab 4096-wide head's 1 GiB), only a slice of about this size.
VOCAB_SLICE_BYTES = 8 * 2**20


def vocab_slice_rows(hidden: int, itemsize: int) -> int:
    """Head rows per cast slice: about ``VOCAB_SLICE_BYTES`` of a ``hidden``-wide head in the matmul dtype."""
    return max(1, VOCAB_SLICE_BYTES // max(1, hidden * itemsize))


def vocab_slices(vocab: int, hidden: int, itemsize: int, whole: bool = False) -> list[tuple[int, int]]:
    """(start, stop) rows of a ``vocab x hidden`` head, ``vocab_slice_rows`` each (one slice if ``whole``)."""
    step = vocab if whole else vocab_slice_rows(hidden, itemsize)
    return [(a, min(a + step, vocab)) for a in range(0, vocab, step)]


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T, target_i); gradients computed chunk by chunk in the forward."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                dtype: torch.dtype, multiple: int = 1, workspace: LossWorkspace | None = None) -> torch.Tensor:
        need_w = weight.requires_grad
        weight = weight.detach()
        vocab, width = weight.shape
        slices = vocab_slices(vocab, width, dtype.itemsize, whole=weight.dtype == dtype)
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        # Two vocab-wide buffers of ``chunk`` rows serve every chunk: the logits in the matmul dtype (then the
        # gradient cast back to it) and their fp32 copy, where the softmax is formed in place (logsumexp and
        # out-of-place ops would add a third and fourth vocab-wide temporary per chunk). The head is cast a slice
        # of rows at a time, twice per chunk (logits, then input gradient), each slice's matmul writing straight
        # into its columns of the buffer: slices are cheaper to cast than the whole head (no fresh block to fault in).
        rows = round_up(chunk, multiple)
        low, f32 = (workspace.buffers if workspace is not None else _allocate)(rows, vocab, dtype, hidden.device)
        upcast = f32 is not low  # fp32 matmuls use one buffer for both
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, hidden.shape[0], chunk):
                h = hidden[s:s + chunk].detach().to(dtype)
                t = targets[s:s + chunk]
                k = len(t)
                if k % multiple:  # zero rows up to the multiple: the matmuls see a shape seen before
                    h = torch.cat([h, h.new_zeros(-k % multiple, h.shape[1])])
                r = h.shape[0]
                logits = low[:r]
                for a, b in slices:
                    torch.mm(h, weight[a:b].to(dtype).T, out=logits[:, a:b])
                z = f32[:r]
                if upcast:
                    z.copy_(logits)
                target_logit = z[:k].gather(1, t[:, None]).squeeze(1)
                top = z.amax(dim=-1)
                z.sub_(top[:, None]).exp_()  # softmax, in place: exp(z - max) / sum
                norm = z.sum(dim=-1)
                total += (norm[:k].log() + top[:k] - target_logit).sum()
                z.div_(norm[:, None])
                z[torch.arange(k, device=t.device), t] -= 1.0
                z[k:] = 0.0  # the padding rows carry no loss
                grad = logits.copy_(z) if upcast else z
                gh = torch.zeros(r, width, dtype=torch.float32, device=hidden.device)
                for a, b in slices:
                    gh.add_(grad[:, a:b] @ weight[a:b].to(dtype))  # summed in fp32 across slices
                    if grad_w is not None:
                        grad_w[a:b].add_(grad[:, a:b].T @ h)  # accumulated in fp32 across chunks
                grad_h[s:s + chunk] = gh[:k].to(hidden.dtype)
        ctx.save_for_backward(grad_h, grad_w if grad_w is not None else torch.empty(0))
        ctx.need_w = need_w
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple:
        grad_h, grad_w = ctx.saved_tensors
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if ctx.need_w else None
        return grad_h * grad_out.to(grad_h.dtype), gw, None, None, None, None, None


def linear_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                             chunk: int = 256, multiple: int = 1,
                             workspace: LossWorkspace | None = None) -> torch.Tensor:
    """Summed next-token CE of ``hidden [N, H]`` against ``targets [N]`` through ``weight [V, H]``.

    Rows whose target is ``IGNORE`` are dropped before any logits are formed. Matmuls run in the
    autocast dtype when autocast is on (as the model's own LM head would), the softmax in fp32. Each chunk's
    rows are rounded up to ``multiple`` with zero rows (no loss, no gradient) so the matmul shapes repeat
    across steps (see data/packing.py on why shapes should repeat). ``workspace`` keeps the vocab-wide
    buffers between calls (``LossWorkspace``); without it they are allocated per call.
    """
    keep = targets != IGNORE
    hidden, targets = hidden[keep], targets[keep]
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk, dtype, max(1, multiple), workspace)


def rewrites_inputs(model: nn.Module) -> bool:
    """A prompt-learning PEFT model (prefix/prompt/p-tuning): its forward adds virtual tokens or a KV prefix."""
    if not hasattr(model, "peft_config"):
        return False
    cfg = model.peft_config.get(getattr(model, "active_adapter", "default"))
    return cfg is None or bool(getattr(cfg, "is_prompt_learning", False))


def split_lm(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(decoder, lm_head) of a causal LM or a PEFT wrapper of one; None if unsupported."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    if type(head) is not nn.Linear or head.bias is not None or decoder is None or decoder is base:
        return None
    return decoder, head


def chunked_lm_loss_sum(model: nn.Module, inputs: dict[str, Any], chunk: int = 256,
                        multiple: int = 1, workspace: LossWorkspace | None = None) -> tuple[torch.Tensor, int]:
    """(summed next-token loss, loss tokens) of ``inputs`` (with ``labels``) without full logits (loss rows
    rounded up to ``multiple`` per chunk, buffers from ``workspace``; see ``linear_cross_entropy_sum``).

    Raises ValueError when ``split_lm(model)`` is None; the caller decides whether to fall back.
    """
    inner = unwrap(model)  # DDP / DeepSpeed wrappers: look things up inside, run the forward through them
    parts = split_lm(inner)
    if parts is None:
        raise ValueError(f"chunked loss does not support {type(inner).__name__}")
    decoder, head = parts
    labels = inputs["labels"]
    kwargs = {k: v for k, v in inputs.items() if k != "labels"} | {"use_cache": False}
    if inner is not model:  # the wrapper's forward is what syncs gradients across processes
        hidden = _wrapped_decoder_output(model, decoder, kwargs)
        extra = hidden.shape[1] - labels.shape[1]
        labels = torch.nn.functional.pad(labels, (extra, 0), value=IGNORE)
    elif rewrites_inputs(inner):
        hidden = _decoder_output(model, decoder, kwargs)
        extra = hidden.shape[1] - labels.shape[1]  # prompt/p-tuning prepend virtual tokens (a prefix adds none)
        labels = torch.nn.functional.pad(labels, (extra, 0), value=IGNORE)
    else:
        hidden = decoder(**kwargs).last_hidden_state
    targets = labels[:, 1:].reshape(-1)
    hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    loss = linear_cross_entropy_sum(hidden, head.weight, targets, chunk, multiple, workspace)
    return loss, int((targets != IGNORE).sum())


class _DecoderDone(Exception):
    """Raised by the decoder's forward hook to stop the model's forward before its LM head."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("decoder output captured")
        self.hidden = hidden


def _decoder_output(model: nn.Module, decoder: nn.Module, kwargs: dict[str, Any]) -> torch.Tensor:
    """The decoder's last hidden state from the model's own forward (which adds the virtual tokens or KV prefix).

    The forward is stopped as the decoder returns: the model's LM head never runs, so under autocast its weight
    is not cast whole (SmolLM2: a 54 MiB bf16 copy for logits nobody reads)."""

    def stop(_m: nn.Module, _i: Any, out: Any) -> None:
        raise _DecoderDone(out.last_hidden_state)

    hook = decoder.register_forward_hook(stop)
    try:
        model(**kwargs)
    except _DecoderDone as done:
        return done.hidden
    finally:
        hook.remove()
    raise ValueError(f"{type(model).__name__}'s forward never called its decoder")


def _wrapped_decoder_output(model: nn.Module, decoder: nn.Module, kwargs: dict[str, Any]) -> torch.Tensor:
    """The decoder's last hidden state from a full forward through a DDP-style wrapper, which prepares the
    gradient all-reduce only when its own forward runs. The LM head sees one position (``logits_to_keep=1``)."""
    seen: list[torch.Tensor] = []
    hook = decoder.register_forward_hook(lambda _m, _i, out: seen.append(out.last_hidden_state))
    try:
        model(**kwargs, logits_to_keep=1)
    finally:
        hook.remove()
    if not seen:
        raise ValueError(f"{type(model).__name__}'s forward never called its decoder")
    return seen[-1]

"""The transformers backend: one worker thread that batches concurrent requests into ``model.generate``.

Requests wait in a queue; the worker takes the oldest, gathers the others that can share its ``generate``
call (same model id and sampling settings, up to ``max_batch`` rows), and runs them as one left-padded
batch - the same generation config and autocast as ``ftatlas eval``/``chat``. A stopping criterion follows
every row: it streams the row's new text, ends it at its own ``max_tokens``, stop string, cancellation
(client gone) or deadline, and tells ``generate`` which rows are done, so a finished row stops costing
anything but padding and the call ends when its last row does.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ftatlas.evaluate.generation import autocast_ctx, generation_config
from ftatlas.recipe import DecodeSpec
from ftatlas.serve.pool import Pool

log = logging.getLogger("ftatlas.serve")


@dataclass
class Job:
    """One generated sequence. ``emit`` receives ``("delta", text)``, then ``("done", finish_reason)`` or
    ``("error", message)``; it is called from the worker thread."""

    model_id: str
    prompt: str
    prompt_ids: list[int]
    max_tokens: int
    decode: DecodeSpec
    stop: list[str]
    emit: Callable[[tuple[str, Any]], None]
    deadline: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    tokens: list[int] = field(default_factory=list)
    text: str = ""  # decoded so far (stop string cut off)
    sent: int = 0  # characters of ``text`` already emitted
    finish: str | None = None

    @property
    def batch_key(self) -> tuple:
        d = self.decode
        return (self.model_id, d.do_sample, d.temperature, d.top_p, d.top_k, d.repetition_penalty,
                d.seed if d.do_sample else None)


class _Rows(StoppingCriteria):
    """Per-row bookkeeping during one ``generate``: called once per step with every row's new last token."""

    def __init__(self, jobs: list[Job], tokenizer: Any, eos: set[int]) -> None:
        self.jobs, self.tok, self.eos = jobs, tokenizer, eos
        self.hold = max((len(s) for j in jobs for s in j.stop), default=1) - 1  # a stop string may be split

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        now = time.monotonic()
        for job, tok in zip(self.jobs, last, strict=True):
            if job.finish is None:
                self._step(job, tok, now)
        return torch.tensor([j.finish is not None for j in self.jobs], device=input_ids.device)

    def _step(self, job: Job, tok: int, now: float) -> None:
        if job.cancelled.is_set():
            job.finish = "cancelled"
            return
        if tok in self.eos:
            self.finish(job, "stop")
            return
        job.tokens.append(tok)
        text = self.tok.decode(job.tokens, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in job.stop) if i >= 0), default=-1)
        if cut >= 0:
            job.text = text[:cut]
            self.finish(job, "stop")
            return
        job.text = text
        if len(job.tokens) >= job.max_tokens:
            self.finish(job, "length")
        elif job.deadline is not None and now > job.deadline:
            self.finish(job, "timeout")
        elif not text.endswith("\ufffd"):  # an incomplete multi-byte character waits for its next token
            self._flush(job, len(text) - self.hold)

    def _flush(self, job: Job, upto: int) -> None:
        if upto > job.sent:
            job.emit(("delta", job.text[job.sent:upto]))
            job.sent = upto

    def finish(self, job: Job, reason: str) -> None:
        job.text = job.text.rstrip("\ufffd")
        self._flush(job, len(job.text))
        job.finish = reason
        job.emit(("done", reason))


class Engine:
    """Owns the worker thread. ``submit`` is safe from any thread; ``close`` finishes queued work first."""

    def __init__(self, pool: Pool, max_batch: int = 16, batch_wait_s: float = 0.005) -> None:
        self.pool, self.max_batch, self.batch_wait_s = pool, max_batch, batch_wait_s
        self._queue: queue.Queue[Job | Callable[[], None] | None] = queue.Queue()
        self._pending: list[Job] = []
        self._thread = threading.Thread(target=self._loop, name="ftatlas-serve-engine", daemon=True)
        self.batches: list[int] = []  # rows per generate call (recent), for logs and tests
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker thread between batches (e.g. reward scoring), so compute never overlaps."""
        self._queue.put(fn)

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        closing = False
        while not (closing and not self._pending):
            closing = self._gather(block=not self._pending) or closing
            if self._pending:
                self._run(self._take_batch())

    def _gather(self, block: bool) -> bool:
        """Move queued jobs to pending (waiting for the first one if ``block``); True once close was asked."""
        deadline = time.monotonic() + self.batch_wait_s
        while True:
            try:
                timeout = None if block else max(0.0, deadline - time.monotonic())
                item = self._queue.get(block=block or timeout > 0, timeout=timeout)
            except queue.Empty:
                return False
            block = False
            if item is None:
                return True
            if callable(item) and not isinstance(item, Job):
                _guarded(item)
            else:
                self._pending.append(item)

    def _take_batch(self) -> list[Job]:
        key = self._pending[0].batch_key
        batch = [j for j in self._pending if j.batch_key == key][: self.max_batch]
        taken = {id(j) for j in batch}
        self._pending = [j for j in self._pending if id(j) not in taken]
        return [j for j in batch if not _skip(j)]

    def _run(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        served = self.pool.models[jobs[0].model_id]
        tok = served.tokenizer
        try:
            if served.backend == "llama.cpp":
                from ftatlas.serve.llama_cpp import run_jobs

                run_jobs(served.model, jobs)
                return
            self._generate(served, jobs)
        except Exception as e:  # a failed batch answers its requests with an error, the server keeps going
            log.exception("generation failed for %s", served.id)
            for j in jobs:
                if j.finish is None:
                    j.finish = "error"
                    j.emit(("error", f"generation failed: {type(e).__name__}"))
            return
        rows = _Rows(jobs, tok, set())
        for j in jobs:  # rows that ran to the batch's max_new_tokens
            if j.finish is None:
                rows.finish(j, "length")

    def _generate(self, served: Any, jobs: list[Job]) -> None:
        tok = served.tokenizer
        cfg = generation_config(jobs[0].decode, tok)
        cfg.max_new_tokens = max(j.max_tokens for j in jobs)
        cfg.num_beams = 1  # rows are followed one sequence each
        eos = cfg.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        side, tok.padding_side = tok.padding_side, "left"
        try:
            width = max(len(j.prompt_ids) for j in jobs)
            pad = tok.pad_token_id if tok.pad_token_id is not None else (min(eos_ids) if eos_ids else 0)
            ids = torch.tensor([[pad] * (width - len(j.prompt_ids)) + j.prompt_ids for j in jobs])
            mask = torch.tensor([[0] * (width - len(j.prompt_ids)) + [1] * len(j.prompt_ids) for j in jobs])
        finally:
            tok.padding_side = side
        with served.active() as model, torch.inference_mode():
            device = next(model.parameters()).device
            torch.manual_seed(jobs[0].decode.seed)
            self.batches = [*self.batches[-255:], len(jobs)]
            with autocast_ctx(device.type, served.autocast):
                model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=cfg,
                               stopping_criteria=StoppingCriteriaList([_Rows(jobs, tok, eos_ids)]))


def _skip(job: Job) -> bool:
    """A job whose client left, or whose time ran out, while it waited: answered without running."""
    if job.cancelled.is_set():
        job.finish = "cancelled"
        return True
    if job.deadline is not None and time.monotonic() > job.deadline:
        job.finish = "timeout"
        job.emit(("done", "timeout"))
        return True
    return False


def _guarded(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # the callable reports its own errors; this only keeps the worker alive
        log.exception("engine call failed")

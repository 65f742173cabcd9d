"""Trainer callbacks: one metrics.jsonl line per logged step (step, loss, lr, tokens/s)."""

from __future__ import annotations

import math
import time

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ftatlas.runs import RunDir


class MetricsLogger(TrainerCallback):
    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._t = time.perf_counter()
        self._tokens = 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw) -> None:
        self._t = time.perf_counter()
        self._tokens = state.num_input_tokens_seen

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict | None = None, **kw) -> None:
        logs = logs or {}
        now = time.perf_counter()
        row: dict = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "loss" in logs:
            seen = state.num_input_tokens_seen
            row.update(loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"),
                       tokens_per_s=round((seen - self._tokens) / max(now - self._t, 1e-9), 1))
            self._t, self._tokens = now, seen
            if not math.isfinite(float(logs["loss"])):
                control.should_training_stop = True
                row["error"] = f"non-finite loss at step {state.global_step}; training stopped"
        row.update({k: v for k, v in logs.items() if k.startswith("eval_")})
        if len(row) > 2:
            self.run.log_metrics(row)

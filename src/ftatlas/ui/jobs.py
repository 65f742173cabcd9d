"""The UI's job queue: ``ftatlas train``, ``merge``, ``export`` and ``arena`` jobs, one at a time, each in its
own process.

A job is the same command a user types (``python -m ftatlas.cli train RECIPE [--resume]``), so a run
started here is an ordinary run directory. Its recipe and console log live in ``<runs>/.ui/``; progress
and ETA come from the run's tqdm bar in that log, curves from the run's own metrics.jsonl.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ftatlas.allocator import preload_env

# tqdm's bar as ProgressBar writes it: "training:  50%|#####     | 2/4 [00:03<00:03, ...]"
_BAR = re.compile(r"training:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")


@dataclass
class Job:
    id: int
    name: str  # the run's name
    args: list[str]  # after ``ftatlas``: ["train", recipe, "--resume"], ["merge", run_dir], ["export", run_dir, ...]
    log_file: Path
    state: str = "queued"  # queued -> running -> done | failed | stopped
    returncode: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("id", "name", "args", "state", "returncode", "created", "started",
                                              "ended")}
        out |= progress(self.log_file) | {"log_tail": log_tail(self.log_file)}
        return out


def progress(log_file: Path) -> dict[str, Any]:
    """Step, total steps, elapsed and ETA from the last tqdm update in a job's log."""
    if not log_file.is_file():
        return {}
    tail = log_file.read_bytes()[-4000:].decode(errors="replace").replace("\r", "\n")
    hits = _BAR.findall(tail)
    if not hits:
        return {}
    step, total, elapsed, eta = hits[-1]
    return {"step": int(step), "total": int(total), "elapsed": elapsed, "eta": eta}


def log_tail(log_file: Path, lines: int = 12) -> str:
    if not log_file.is_file():
        return ""
    text = log_file.read_bytes()[-6000:].decode(errors="replace").replace("\r", "\n")
    kept: list[str] = []
    for ln in (ln for ln in text.splitlines() if ln.strip()):
        if kept and "|" in ln and ln.split(":")[0] == kept[-1].split(":")[0]:
            kept[-1] = ln  # a progress bar's redraw replaces its previous state, as on a terminal
        else:
            kept.append(ln)
    return "\n".join(kept[-lines:])


class JobQueue:
    """FIFO of jobs; one worker thread runs them one after another (a CPU trains one run at a time)."""

    def __init__(self, runs_root: Path, cwd: Path | None = None) -> None:
        self.runs_root = runs_root
        self.cwd = cwd or Path.cwd()
        self.jobs: list[Job] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="ftatlas-ui-jobs", daemon=True)
        self._worker.start()

    @property
    def folder(self) -> Path:
        return self.runs_root / ".ui"

    def submit(self, recipe: dict[str, Any], resume: bool = False) -> Job:
        """Queue a validated recipe dict (its ``output.name`` set); writes it to ``.ui/<name>.yaml``."""
        name = recipe["output"]["name"]
        self.folder.mkdir(parents=True, exist_ok=True)
        recipe_file = self.folder / f"{name}.yaml"
        self._busy(name)
        recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
        return self._add(name, ["train", str(recipe_file), *(["--resume"] if resume else [])], f"{name}.log")

    def submit_merge(self, run_dir: Path) -> Job:
        """``ftatlas merge RUN``: fold the adapter in and re-score it (merge.json in the run dir)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._busy(run_dir.name, ["merge", str(run_dir)])
        return self._add(run_dir.name, ["merge", str(run_dir)], f"{run_dir.name}.merge.log")

    def submit_export(self, run_dir: Path, to: str, quant: str | None) -> Job:
        """``ftatlas export RUN --to F [--quant Q]``: write, reload in its consumer, re-score (export.json in
        ``RUN/exports/F-Q/``). Several exports of one run may queue; the same one twice may not."""
        args = ["export", str(run_dir), "--to", to, *(["--quant", quant] if quant else [])]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._busy(run_dir.name, args)
        return self._add(run_dir.name, args, f"{run_dir.name}.export-{to}{'-' + quant if quant else ''}.log")

    def submit_arena(self, arena_file: Path, name: str) -> Job:
        """``ftatlas arena FILE``: every cell, one after another (finished cells are reused)."""
        args = ["arena", str(arena_file)]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._busy(f"arena:{name}", args)
        return self._add(f"arena:{name}", args, f"arena-{name}.log")

    def _busy(self, name: str, args: list[str] | None = None) -> None:
        """Training (``args`` None) and merging refuse a run with any live job; an export refuses only a live
        training of its run or the same export already queued."""
        for j in self.jobs:
            if j.name != name or j.state not in ("queued", "running", "stopping"):
                continue
            if args is None or args[0] == "merge" or j.args[0] == "train":
                raise ValueError(f"run {name!r} already has a queued or running job")
            if j.args == args:
                raise ValueError(f"{' '.join(args[:1] + args[2:])} of {name!r} is already queued or running")

    def _add(self, name: str, args: list[str], log_name: str) -> Job:
        with self._lock:
            job = Job(next(self._ids), name, args, self.folder / log_name)
            self.jobs.append(job)
        self._wake.set()
        return job

    def get(self, job_id: int) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise KeyError(f"no job {job_id}")

    def stop(self, job_id: int) -> Job:
        """A queued job is dropped; a running one gets SIGTERM (its checkpoints stay for a resume)."""
        job = self.get(job_id)
        with self._lock:
            if job.state == "queued":
                job.state = "stopped"
                return job
        if job.state == "running" and job.proc is not None:
            job.state = "stopping"
            os.killpg(job.proc.pid, signal.SIGTERM)
        return job

    def close(self) -> None:
        self._closed = True
        for j in self.jobs:
            if j.state in ("queued", "running"):
                self.stop(j.id)
        self._wake.set()

    def _next(self) -> Job | None:
        with self._lock:
            return next((j for j in self.jobs if j.state == "queued"), None)

    def _loop(self) -> None:
        while not self._closed:
            job = self._next()
            if job is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        cmd = [sys.executable, "-m", "ftatlas.cli", *job.args]
        env = preload_env() | {"PYTHONUNBUFFERED": "1"}
        with open(job.log_file, "w") as log, self._lock:
            job.started, job.state = time.time(), "running"
            # its own process group, so a stop reaches the trainer and anything it spawned
            job.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd, env=env,
                                        start_new_session=True)
        job.returncode = job.proc.wait()
        job.ended = time.time()
        job.state = "stopped" if job.state == "stopping" else "done" if job.returncode == 0 else "failed"

"""``ftatlas arena --ray ADDRESS``: the arena's cells as Ray tasks, in parallel across a Ray cluster.

Each task runs the same ``ftatlas train`` command the local runner does (``runner.execute_cell``), on a
worker; skipping finished cells, recording failures and writing the reports stay in the driver. Workers
need ftatlas installed and must see the arena folder, the model and the data at the same paths as the
driver (a shared filesystem), since the cell's run dir is written there and read back by the driver.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ftatlas.arena.runner import ArenaError, CellJob, Executor, execute_cell

INSTALL_HINT = "pip install 'ftatlas[ray]' (or: pip install ray)"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ArenaError(f"--ray needs Ray: {INSTALL_HINT}") from None
    return ray


def connect(address: str) -> bool:
    """Join the cluster at ``address`` (``auto``, ``host:port``, ``ray://host:10001``), or start a Ray instance
    on this machine for ``local``. True if this call started Ray (and so should shut it down)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(num_cpus=os.cpu_count() or 1, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ArenaError(f"--ray {address}: could not connect to Ray: {e}") from e
    return True


def ray_executor(address: str, cpus_per_cell: float = 1.0, gpus_per_cell: float = 0.0) -> Executor:
    """An arena executor that submits every pending cell as a Ray task (each reserving ``cpus_per_cell``
    CPUs and ``gpus_per_cell`` GPUs) and yields them as they finish."""
    if cpus_per_cell <= 0 or gpus_per_cell < 0:
        raise ArenaError("--cell-cpus must be > 0 and --cell-gpus >= 0")
    _ray()

    def run(jobs: Iterable[CellJob]) -> Iterator[tuple[CellJob, int, float]]:
        ray = _ray()
        jobs = iter(jobs)
        first = next(jobs, None)
        if first is None:  # every cell finished before: no need to reach the cluster
            return
        started = connect(address)
        try:
            task = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0)(execute_cell)
            cwd = str(Path.cwd())
            pending = {task.remote(str(job.recipe_file.resolve()), str(job.log_file.resolve()), cwd): job
                       for job in itertools.chain([first], jobs)}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(done[0])
                try:
                    returncode, wall = ray.get(done[0])
                except ray.exceptions.RayError as e:  # the worker died or the task could not run there
                    job.log_file.write_text(f"error: Ray task failed: {type(e).__name__}: {e}\n")
                    returncode, wall = -1, 0.0
                yield job, returncode, wall
        finally:
            if started:
                ray.shutdown()

    return run

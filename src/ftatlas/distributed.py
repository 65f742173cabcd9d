"""Several processes, one run: rank handling and the ``train.distributed`` presets.

The processes are started by the launchers (``torchrun``, ``accelerate launch``; multi-node through their own
rendezvous) and the Trainer (accelerate) wraps the model. What is ours: which process writes (rank 0 alone
writes the run dir, logs and evaluates), the run dir name every rank agrees on, and the preset each
``train.distributed`` value stands for (TrainingArguments fields), written into the run dir.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from ftatlas.recipe import Recipe

GPU_ONLY = ("zero2", "zero3", "zero3_offload")  # DeepSpeed's ZeRO engines run on CUDA devices (see preset)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate launch


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def _state() -> Any:
    from accelerate import PartialState

    return PartialState()  # joins the launcher's process group (gloo on CPU); the Trainer reuses it


@contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. writes a cache), the others after it (and read it)."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object), e.g. the run dir it created."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    _state()
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model: Any) -> Any:
    """The model inside a DDP / FSDP / DeepSpeed / compile wrapper (for attribute lookups, never for forward)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model)


def shards_params(recipe: Recipe) -> bool:
    """Whether parameters are sharded across ranks (FSDP, ZeRO-3): a weight read outside the wrapper's forward
    is then a shard, so the fast path that reads the LM head directly is off."""
    return recipe.train.distributed in ("fsdp", "zero3", "zero3_offload")


def _deepspeed(stage: int, offload: bool) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if offload:
        zero |= {"offload_optimizer": {"device": "cpu", "pin_memory": True},
                 "offload_param": {"device": "cpu", "pin_memory": True}}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto", "train_batch_size": "auto"}


def _user_config(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"train.distributed_config: {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text())  # YAML reads JSON too
    except yaml.YAMLError as e:
        raise ValueError(f"train.distributed_config: {path} is not valid YAML/JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"train.distributed_config: {path} must hold a mapping")
    return data


def _accelerate_version() -> str:
    from importlib.metadata import version

    return version("accelerate")


def preset(recipe: Recipe, device: str) -> dict[str, Any]:
    """TrainingArguments fields for ``train.distributed`` (a user's ``distributed_config`` replaces the preset's
    FSDP or DeepSpeed settings). Stops with a clear message where the engine cannot run here."""
    t = recipe.train
    kind = t.distributed
    fields: dict[str, Any] = {}
    if world_size() > 1:
        fields["ddp_find_unused_parameters"] = False  # every trained parameter gets a gradient
        if device == "cpu":
            fields["ddp_backend"] = "gloo"
    if kind in GPU_ONLY:
        if device != "cuda":
            raise ValueError(f"train.distributed={kind}: DeepSpeed ZeRO runs on CUDA GPUs only here (the Trainer "
                             f"starts it through accelerate {_accelerate_version()}, which uses DeepSpeed only off "
                             f"CPU) and this run is on {device}; use train.distributed=ddp or fsdp")
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise ValueError(f"train.distributed={kind} needs the deepspeed package (pip install 'ftatlas[cuda]')")
        fields["deepspeed"] = _user_config(t.distributed_config) if t.distributed_config else _deepspeed(
            2 if kind == "zero2" else 3, kind == "zero3_offload")
    elif kind == "fsdp":
        if device == "cpu" and world_size() == 1:
            raise ValueError("train.distributed=fsdp shards the model across processes and this is one CPU process: "
                             "start it with torchrun --nproc_per_node N -m ftatlas.cli train ... (FSDP2 over gloo), "
                             "or use train.distributed=none")
        fields["fsdp"] = True  # FSDP2, fully sharded (fsdp_config below), transformer layers wrapped
        fields["fsdp_config"] = _user_config(t.distributed_config) if t.distributed_config else {
            "version": 2, "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT"}
    elif t.distributed_config:
        raise ValueError(f"train.distributed_config is for fsdp and zero* presets, not {kind!r}")
    return fields


def shard_on_cpu(args: Any, device: str) -> None:
    """FSDP2 on CPU processes (gloo): accelerate applies FSDP only on accelerator devices and on CPU would set up
    DDP with the FSDP settings dropped, so nothing would be sharded. Its process-wide state is set to FSDP2 here,
    before the Trainer creates its Accelerator (which reuses that state); ``fully_shard`` itself runs on CPU."""
    if device != "cpu" or world_size() == 1 or not getattr(args, "fsdp_plugin_args", None):
        return
    from accelerate import Accelerator, FullyShardedDataParallelPlugin, PartialState
    from accelerate.utils import DistributedType

    _ = args.device  # TrainingArguments resets accelerate's state once, when it first sets up its device
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "no"
    state = Accelerator(cpu=True, mixed_precision=precision).state  # the singleton the Trainer's Accelerator reuses
    if state.distributed_type == DistributedType.FSDP:
        return
    if state.distributed_type != DistributedType.MULTI_CPU:
        raise ValueError(f"train.distributed=fsdp on CPU: expected accelerate's multi-CPU state, got "
                         f"{state.distributed_type}")
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    if precision != "no":  # as accelerate does for FSDP on GPUs: bf16/fp16 compute and reduction, fp32 shards kept
        plugin.set_mixed_precision(precision)
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # every AcceleratorState() copies it


def accelerate_config(recipe: Recipe, device: str, fields: dict[str, Any]) -> dict[str, Any]:
    """An ``accelerate launch --config_file`` equivalent of the preset (processes from the current launch)."""
    kind = recipe.train.distributed
    distributed_type = {"fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "zero3_offload": "DEEPSPEED"}
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": distributed_type.get(kind, "MULTI_GPU" if device == "cuda" else "MULTI_CPU"),
        "num_processes": world_size(), "num_machines": int(os.environ.get("NNODES", "1")),
        "use_cpu": device == "cpu", "mixed_precision": "no",  # precision comes from the recipe (train.precision)
    }
    if "deepspeed" in fields:
        cfg["deepspeed_config"] = {"deepspeed_config_file": "deepspeed.json"}
    if "fsdp_config" in fields:
        cfg["fsdp_config"] = {f"fsdp_{k}": v for k, v in fields["fsdp_config"].items()}
    return cfg


def write_presets(run_path: Path, recipe: Recipe, device: str, fields: dict[str, Any]) -> None:
    """``distributed.json`` (what this run used: world size and TrainingArguments fields), ``accelerate.yaml``
    and, for ZeRO, ``deepspeed.json`` into the run dir."""
    from ftatlas.runs import atomic_write

    info = {"distributed": recipe.train.distributed, "world_size": world_size(), "device": device,
            "training_arguments": fields}
    atomic_write(run_path / "distributed.json", json.dumps(info, indent=2) + "\n")
    atomic_write(run_path / "accelerate.yaml", yaml.safe_dump(accelerate_config(recipe, device, fields)))
    if "deepspeed" in fields and isinstance(fields["deepspeed"], dict):
        atomic_write(run_path / "deepspeed.json", json.dumps(fields["deepspeed"], indent=2) + "\n")


def record_engine(run_path: Path, trainer: Any) -> None:
    """Add what actually ran to ``distributed.json``: accelerate's engine and the wrapper around the model, and
    how many parameters were sharded (DTensors under FSDP2)."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from ftatlas.runs import atomic_write

    for module in trainer.model_wrapped.modules():
        if isinstance(module, FSDPModule):
            module.reshard()  # FSDP2 keeps the root's weights gathered after a forward without backward (eval)
    params = dict(trainer.model_wrapped.named_parameters())
    whole = [name for name, p in params.items() if not isinstance(p, DTensor)]
    info = {"engine": str(trainer.accelerator.distributed_type.value), "wrapper": type(trainer.model_wrapped).__name__,
            "sharded_parameters": f"{len(params) - len(whole)} of {len(params)}"}
    if whole and len(whole) < len(params):
        info["unsharded"] = whole
    file = run_path / "distributed.json"
    written = json.loads(file.read_text()) if file.is_file() else {}  # the preset, from write_presets
    atomic_write(file, json.dumps(written | info, indent=2) + "\n")

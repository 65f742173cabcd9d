"""ftatlas: advise, run and measure every way to adapt an LLM from one recipe."""

import logging

__version__ = "0.1.0"

# bitsandbytes tries to fetch an optional CPU kernel from the Hugging Face hub on import and warns when it
# cannot (always, offline); its built-in CPU path is used instead, so the warning is noise for our users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


class _DropRecords(logging.Filter):
    """Drops log records whose message contains one of ``parts`` (known noise, nothing else)."""

    def __init__(self, *parts: str) -> None:
        super().__init__()
        self.parts = parts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p in message for p in self.parts)


# transformers imports torchao (the [quant] extra) on every model load once it is installed; torchao then warns
# that its CUDA-only kernels (.so files) do not load on a CPU build of torch, and torch that two of torchao's
# enums need no registration. Neither changes what runs; other torchao/torch messages still show.
logging.getLogger("torchao").addFilter(_DropRecords("Failed to load"))
logging.getLogger("torch.utils._pytree").addFilter(_DropRecords("register_constant()"))

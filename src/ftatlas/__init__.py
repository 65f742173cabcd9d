"""ftatlas: advise, run and measure every way to adapt an LLM from one recipe."""

import logging

__version__ = "0.1.0"

# bitsandbytes tries to fetch an optional CPU kernel from the Hugging Face hub on import and warns when it
# cannot (always, offline); its built-in CPU path is used instead, so the warning is noise for our users.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

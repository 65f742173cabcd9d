"""ftatlas: advise, run and measure every way to adapt an LLM from one recipe."""

__version__ = "0.1.0"

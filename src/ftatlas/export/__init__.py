"""Export: merge adapters into their base (re-scored against the adapter), later GGUF and quantized exports."""

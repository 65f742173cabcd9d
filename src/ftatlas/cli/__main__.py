"""``python -m ftatlas.cli``: the CLI without the allocator re-exec (``ftatlas.launch`` does that)."""

from ftatlas.cli import app

app(prog_name="ftatlas")

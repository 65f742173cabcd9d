"""``zero_shot``: the question alone, optionally framed by a system prompt and a prompt template.

With neither set it is the identity (the model sees the row as written); this is the default context.
"""

from __future__ import annotations

from ftatlas.context.base import Context, register


@register("zero_shot")
class ZeroShot(Context):
    summary = "system prompt + prompt template only (prompt engineering baseline)"

    @property
    def is_identity(self) -> bool:
        return not (self.params.system or self.params.template)

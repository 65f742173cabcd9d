"""An Ollama ``Modelfile`` for an exported GGUF: the run's chat template (as a Go template), system prompt,
stop tokens and decoding.

Ollama templates are Go ``text/template``, not Jinja. The run's Jinja template is rendered with marker
contents and cut at the markers into per-role prefix/suffix strings, which the Go template then
concatenates; a template that is not "one wrapper per message" is refused rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from ftatlas.context.base import resolve_context
from ftatlas.export.source import ExportError, Source
from ftatlas.runs import atomic_write

_MARK = {"S": "SYSMARK7Q", "U": "USERMARK7Q", "A": "ASSTMARK7Q", "U2": "USER2MARK7Q", "A2": "ASST2MARK7Q"}


@dataclass
class Wrappers:
    """The strings a chat template puts around each message, cut from renders of marker conversations."""

    default: str  # emitted when the conversation has no system message (e.g. a built-in system prompt)
    system: tuple[str, str]
    user: tuple[str, str]
    assistant: tuple[str, str]
    generation: str  # after the last user message, to start the answer


def _render(tok: PreTrainedTokenizerBase, roles: list[tuple[str, str]], gen: bool) -> str:
    msgs = [{"role": r, "content": _MARK[k]} for r, k in roles]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


def _between(text: str, a: str | None, b: str | None) -> str:
    for k in (a, b):
        if k and _MARK[k] not in text:  # e.g. a system prompt folded into the first user turn elsewhere
            raise ExportError("the chat template does not render every message in place; write the Modelfile "
                              "TEMPLATE by hand (https://github.com/ollama/ollama/blob/main/docs/template.md)")
    start = text.index(_MARK[a]) + len(_MARK[a]) if a else 0
    return text[start: text.index(_MARK[b]) if b else len(text)]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def role_wrappers(tok: PreTrainedTokenizerBase) -> Wrappers:
    """Per-role wrappers of ``tok``'s chat template; ExportError when it is not a per-message concatenation."""
    if not getattr(tok, "chat_template", None):
        raise ExportError("the run's tokenizer has no chat template to put in the Modelfile")
    roles = [("system", "S"), ("user", "U"), ("assistant", "A"), ("user", "U2"), ("assistant", "A2")]
    full = _render(tok, roles, gen=False)
    gen_tail = _between(_render(tok, roles[:2], gen=True), "U", None)
    no_sys = _render(tok, roles[1:3], gen=False)
    asst_suffix = _between(full, "A2", None)
    gap_au, gap_su, gap_ua = _between(full, "A", "U2"), _between(full, "S", "U"), _between(full, "U", "A")
    if not gap_au.startswith(asst_suffix):
        raise ExportError("the chat template does not wrap each message the same way; write the Modelfile "
                          "TEMPLATE by hand (https://github.com/ollama/ollama/blob/main/docs/template.md)")
    user_prefix = gap_au[len(asst_suffix):]
    before_user = _between(no_sys, None, "U")
    if not (gap_su.endswith(user_prefix) and before_user.endswith(user_prefix)):
        raise ExportError("the chat template's user turn starts differently after a system message; write the "
                          "Modelfile TEMPLATE by hand")
    user_suffix = _common_prefix(gap_ua, asst_suffix)  # turns usually end alike (<|im_end|>, <|eot_id|>)
    if not gen_tail.startswith(user_suffix):
        user_suffix = _common_prefix(gap_ua, gen_tail)
    wrappers = Wrappers(default=before_user[: len(before_user) - len(user_prefix)],
                        system=(_between(full, None, "S"), gap_su[: len(gap_su) - len(user_prefix)]),
                        user=(user_prefix, user_suffix), assistant=(gap_ua[len(user_suffix):], asst_suffix),
                        generation=gen_tail[len(user_suffix):])
    if render_wrappers(wrappers, [("system", _MARK["S"]), *[(r, _MARK[k]) for r, k in roles[1:]]]) != full:
        raise ExportError("the chat template is not a per-message concatenation; write the Modelfile TEMPLATE "
                          "by hand")
    return wrappers


def render_wrappers(w: Wrappers, messages: list[tuple[str, str]], gen: bool = False) -> str:
    """What the Go template renders for ``messages`` (role, content); used to check the cut."""
    parts = [] if messages and messages[0][0] == "system" else [w.default]
    for role, content in messages:
        pre, suf = getattr(w, role)
        parts += [pre, content, suf]
    return "".join(parts) + (w.generation if gen else "")


def _lit(text: str) -> str:
    """Literal text inside a Go template (its only special sequence is the action opener)."""
    return text.replace("{{", '{{ "{{" }}')


def go_template(w: Wrappers) -> str:
    """The Ollama TEMPLATE: per-message wrappers over ``.Messages``, the generation prompt after the last user turn.
    No ``{{-`` trims: they would eat the template's own newlines."""
    s, u, a = w.system, w.user, w.assistant
    return (
        f'{{{{ if ne (index .Messages 0).Role "system" }}}}{_lit(w.default)}{{{{ end }}}}'
        "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        f'{{{{ if eq .Role "system" }}}}{_lit(s[0])}{{{{ .Content }}}}{_lit(s[1])}'
        f'{{{{ else if eq .Role "user" }}}}{_lit(u[0])}{{{{ .Content }}}}{_lit(u[1])}'
        f"{{{{ if $last }}}}{_lit(w.generation)}{{{{ end }}}}"
        f'{{{{ else if eq .Role "assistant" }}}}{_lit(a[0])}{{{{ .Content }}}}{_lit(a[1])}'
        "{{ end }}{{ end }}"
    )


def stop_tokens(tok: PreTrainedTokenizerBase, w: Wrappers) -> list[str]:
    """The end-of-turn strings: the EOS token and every special token that closes an assistant turn."""
    stops = [tok.eos_token] if tok.eos_token else []
    special = sorted(set(tok.all_special_tokens) | {str(t) for t in tok.added_tokens_decoder.values()
                                                     if getattr(t, "special", False)}, key=len, reverse=True)
    in_suffix = [t for t in special if t and t in w.assistant[1]]
    if not in_suffix and w.user[0].strip():  # plain-text turns: stop where the next user turn would begin
        return stops + [w.user[0].strip()]
    return stops + [t for t in in_suffix if t not in stops]


def _quote(value: str) -> str:
    if '"""' in value:
        raise ExportError(f'a Modelfile value cannot contain """: {value[:40]!r}')
    return f'"""{value}"""'


def system_prompt(src: Source) -> str | None:
    """The run's zero-shot system prompt (few-shot / RAG contexts are not something a GGUF can carry)."""
    name, params = resolve_context(src.recipe, None, None)
    return params.get("system") if name == "zero_shot" else None


def modelfile_text(gguf: Path, src: Source, adapter: Path | None = None) -> str:
    w = role_wrappers(src.tokenizer)
    decode = src.recipe.eval.decode
    lines = [f"FROM ./{gguf.name}"]
    if adapter is not None:
        lines.append(f"ADAPTER ./{adapter.name}")
    lines.append(f"TEMPLATE {_quote(go_template(w))}")
    system = system_prompt(src)
    if system:
        lines.append(f"SYSTEM {_quote(system)}")
    lines += [f'PARAMETER stop "{s}"' for s in stop_tokens(src.tokenizer, w)]
    lines.append(f"PARAMETER temperature {decode.temperature if decode.do_sample else 0}")
    if decode.do_sample:
        lines += [f"PARAMETER top_k {decode.top_k}", f"PARAMETER top_p {decode.top_p}"]
    lines += [f"PARAMETER repeat_penalty {decode.repetition_penalty}", f"PARAMETER num_predict {decode.max_new_tokens}"]
    return "\n".join(lines) + "\n"


def write_modelfile(path: Path, gguf: Path, src: Source, adapter: Path | None = None) -> Path:
    atomic_write(path, modelfile_text(gguf, src, adapter))
    return path


_DIRECTIVE = re.compile(r'^(FROM|ADAPTER|TEMPLATE|SYSTEM|PARAMETER|LICENSE|MESSAGE)\s+(.*)$', re.S)


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(directive, value) pairs, with triple-quoted multi-line values; ValueError naming the bad line."""
    out: list[tuple[str, str]] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _DIRECTIVE.match(line)
        if not m:
            raise ValueError(f"Modelfile line {i}: unknown directive {line.split()[0]!r}")
        key, value = m.group(1), m.group(2).rstrip("\n")
        if value.startswith('"""'):
            value = m.group(2)
            value = value[3:]
            while '"""' not in value:
                if i >= len(lines):
                    raise ValueError(f"Modelfile line {i}: unterminated triple-quoted {key}")
                value += lines[i]
                i += 1
            value = value[: value.index('"""')]
        out.append((key, value))
    return out

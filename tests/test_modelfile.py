"""The Ollama Modelfile: the run's Jinja chat template cut into per-role wrappers, rendered by Go's text/template
exactly as the tokenizer renders it; templates that are not one wrapper per message are refused."""

from __future__ import annotations

import copy
import shutil

import pytest
from go_render import render_with_go

from ftatlas.export.modelfile import go_template, parse_modelfile, render_wrappers, role_wrappers, stop_tokens
from ftatlas.export.source import ExportError
from ftatlas.models.loading import apply_template

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {{ there }}"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again?"}]
# Llama-2 style: the system prompt goes inside the first user turn, not a wrapper of its own.
INLINE_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}"
                 "{% elif m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]{% else %} {{ m['content'] }}</s>"
                 "{% endif %}{% endfor %}")


@pytest.fixture
def tok(tokenizer):
    return copy.deepcopy(tokenizer)


@pytest.mark.parametrize("template", [None, "chatml", "plain"])
def test_wrappers_reassemble_what_the_tokenizer_renders(tok, template):
    apply_template(tok, template)
    w = role_wrappers(tok)
    for conv in (CONV, CONV[1:]):  # with and without a system message (SmolLM2 then adds its own)
        expected = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert render_wrappers(w, [(m["role"], m["content"]) for m in conv], gen=True) == expected


def test_stop_tokens_end_the_assistant_turn(tok):
    assert stop_tokens(tok, role_wrappers(tok)) == ["<|im_end|>"]
    apply_template(tok, "plain")  # no special token closes a turn: stop where the next user turn begins
    assert stop_tokens(tok, role_wrappers(tok)) == ["<|im_end|>", "### User:"]


def test_a_template_that_is_not_per_message_is_refused(tok):
    apply_template(tok, INLINE_SYSTEM)
    with pytest.raises(ExportError, match="by hand"):
        role_wrappers(tok)


def test_modelfile_values_parse_back_verbatim():
    text = 'FROM ./m.gguf\nTEMPLATE """a\n{{ .Content }}\n"""\nPARAMETER stop "<|im_end|>"\n'
    assert parse_modelfile(text) == [("FROM", "./m.gguf"), ("TEMPLATE", "a\n{{ .Content }}\n"),
                                     ("PARAMETER", 'stop "<|im_end|>"')]
    with pytest.raises(ValueError, match="line 2: unknown directive 'TEMPLAT'"):
        parse_modelfile("FROM x\nTEMPLAT y\n")


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed (apt-get install golang-go)")
@pytest.mark.parametrize("template", [None, "plain"])
def test_go_text_template_renders_the_same_prompt(tok, tmp_path, template):
    apply_template(tok, template)
    source = go_template(role_wrappers(tok))
    for conv in (CONV, CONV[1:]):
        assert render_with_go(tmp_path, source, conv) == tok.apply_chat_template(conv, tokenize=False,
                                                                                add_generation_prompt=True)

"""Model source resolution, chat templates, device/precision choice and the registry, without loading weights."""

from __future__ import annotations

import copy

import pytest
import torch

import ftatlas.models.device as device_mod
from ftatlas.models.device import Precision, resolve_device, resolve_precision, torch_dtype
from ftatlas.models.loading import ModelLoadError, apply_template, require_chat_template, resolve_source
from ftatlas.models.templates import CHATML, NAMED_TEMPLATES, PLAIN
from ftatlas.registry import Registry, UnknownNameError

MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]


@pytest.fixture
def tok(tokenizer):
    """A private copy of the session tokenizer, safe to mutate."""
    return copy.deepcopy(tokenizer)


# --- resolve_source ---------------------------------------------------------------------------------------------


def test_missing_gguf_file(tmp_path):
    path = tmp_path / "model.gguf"
    with pytest.raises(ModelLoadError) as info:
        resolve_source(str(path))
    assert str(path) in str(info.value)
    assert "does not exist" in str(info.value)


def test_dir_without_config(tmp_path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError) as info:
        resolve_source(str(tmp_path))
    msg = str(info.value)
    assert str(tmp_path) in msg
    assert "config.json" in msg


def test_existing_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x")
    with pytest.raises(ModelLoadError, match="config.json"):
        resolve_source(str(path))


@pytest.mark.parametrize("name", ["smollm2", "not-a-model", "a/b/c", "/nonexistent", "./x"])
def test_unresolvable_name(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names must not exist
    with pytest.raises(ModelLoadError) as info:
        resolve_source(name)
    msg = str(info.value)
    assert repr(name) in msg
    assert "smollm2-135m" in msg  # lists the aliases
    assert "hub id (org/name)" in msg


def test_hf_dir_is_returned_as_is(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert resolve_source(str(tmp_path)) == str(tmp_path)


def test_hf_dir_with_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "mdl").mkdir()
    (tmp_path / "mdl" / "config.json").write_text("{}")
    assert resolve_source("~/mdl") == str(tmp_path / "mdl")


def test_relative_hf_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "local").mkdir()
    (tmp_path / "org" / "local" / "config.json").write_text("{}")
    assert resolve_source("org/local") == "org/local"  # an existing dir wins over the hub-id reading


def test_hub_id_is_returned_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_source("HuggingFaceTB/SmolLM2-360M-Instruct") == "HuggingFaceTB/SmolLM2-360M-Instruct"


# --- templates --------------------------------------------------------------------------------------------------


def test_apply_template_none_keeps_tokenizer_template(tok, tokenizer):
    apply_template(tok, None)
    assert tok.chat_template == tokenizer.chat_template
    assert tok.chat_template


def test_apply_named_chatml(tok):
    apply_template(tok, "chatml")
    assert tok.chat_template == CHATML
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    assert "SmolLM" not in text  # the model's own template (with its default system prompt) is replaced


def test_apply_named_plain(tok):
    apply_template(tok, "plain")
    assert tok.chat_template == PLAIN
    text = tok.apply_chat_template(MESSAGES[:1], tokenize=False, add_generation_prompt=True)
    assert text == "### User:\nhi\n\n### Assistant:\n"


def test_apply_inline_jinja(tok):
    inline = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    apply_template(tok, inline)
    assert tok.chat_template == inline
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == "[user]hi[assistant]yo"


def test_apply_inline_expression_only(tok):
    apply_template(tok, "{{ messages[0]['content'] }}")
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == "hi"


def test_apply_missing_jinja_file(tok, tmp_path):
    path = tmp_path / "missing.jinja"
    before = tok.chat_template
    with pytest.raises(ModelLoadError) as info:
        apply_template(tok, str(path))
    assert "model.template" in str(info.value)
    assert str(path) in str(info.value)
    assert tok.chat_template == before  # unchanged on error


@pytest.mark.parametrize("suffix", [".jinja", ".j2"])
def test_apply_existing_jinja_file(tok, tmp_path, suffix):
    path = tmp_path / f"tpl{suffix}"
    body = "{% for m in messages %}<{{ m['role'] }}>{% endfor %}"
    path.write_text(body)
    apply_template(tok, str(path))
    assert tok.chat_template == body
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == "<user><assistant>"


def test_apply_unknown_word(tok):
    with pytest.raises(ModelLoadError) as info:
        apply_template(tok, "chatmll")
    msg = str(info.value)
    assert "model.template='chatmll'" in msg
    assert ", ".join(NAMED_TEMPLATES) in msg
    assert "chatml" in msg and "plain" in msg


def test_require_chat_template_without_template(tok):
    tok.chat_template = None
    with pytest.raises(ModelLoadError) as info:
        require_chat_template(tok, "objective sft")
    msg = str(info.value)
    assert msg.startswith("objective sft needs a chat template")
    assert "model.template" in msg
    assert "chatml" in msg


def test_require_chat_template_empty_string(tok):
    tok.chat_template = ""
    with pytest.raises(ModelLoadError, match="model.template"):
        require_chat_template(tok, "x")


def test_require_chat_template_passes_after_apply(tok):
    tok.chat_template = None
    apply_template(tok, "plain")
    require_chat_template(tok, "objective sft")  # no error


def test_session_tokenizer_has_template_and_pad(tokenizer):
    require_chat_template(tokenizer, "objective sft")
    assert tokenizer.pad_token is not None


# --- precision --------------------------------------------------------------------------------------------------


def test_fp32_on_cpu():
    p = resolve_precision("fp32", "cpu")
    assert p == Precision(torch.float32, None)
    assert p.label == "float32"
    assert resolve_precision("float32", "cpu") == p


def test_bf16_on_cpu_is_fp32_weights_with_autocast():
    p = resolve_precision("bf16", "cpu")
    assert p.weights == torch.float32
    assert p.autocast == torch.bfloat16
    assert p.label == "float32 weights + bfloat16 autocast"
    assert resolve_precision("bfloat16", "cpu") == p


@pytest.mark.parametrize("name", ["fp16", "float16"])
def test_fp16_on_cpu_is_an_error(name):
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        resolve_precision(name, "cpu")


def test_fp16_on_cuda_name():
    assert resolve_precision("fp16", "cuda") == Precision(torch.float32, torch.float16)


def test_auto_on_cpu_follows_cpu_bf16():
    want = Precision(torch.float32, torch.bfloat16 if device_mod.cpu_has_bf16() else None)
    assert resolve_precision("auto", "cpu") == want


@pytest.mark.parametrize(("has_bf16", "autocast"), [(True, torch.bfloat16), (False, None)])
def test_auto_on_cpu_forced(monkeypatch, has_bf16, autocast):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: has_bf16)
    assert resolve_precision("auto", "cpu") == Precision(torch.float32, autocast)


def test_auto_on_mps_has_no_autocast(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto", "mps") == Precision(torch.float32, None)


def test_unknown_precision():
    with pytest.raises(ValueError) as info:
        resolve_precision("int8", "cpu")
    assert "'int8'" in str(info.value)
    assert "auto, fp32, bf16, fp16" in str(info.value)


def test_cpu_has_bf16_is_a_bool():
    assert isinstance(device_mod.cpu_has_bf16(), bool)


def test_torch_dtype():
    assert torch_dtype("auto") is None
    assert torch_dtype("float32") is torch.float32
    assert torch_dtype("bfloat16") is torch.bfloat16
    assert torch_dtype("float16") is torch.float16


# --- device -----------------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_explicit_cuda_without_cuda():
    with pytest.raises(RuntimeError) as info:
        resolve_device("cuda")
    assert "model.device=cuda" in str(info.value)
    assert "auto or cpu" in str(info.value)


def test_explicit_cuda_missing_forced(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


def test_explicit_mps_missing_forced(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="MPS is not available"):
        resolve_device("mps")


def test_cpu_always_resolves():
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize(
    ("cuda", "mps", "want"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_device_order(monkeypatch, cuda, mps, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == want
    assert resolve_device() == want


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry_register_get_and_listing():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def b():
        return "B"

    reg.register("a")(len)
    assert reg.get("b") is b  # the decorator returns the entry unchanged
    assert reg.get("a") is len
    assert reg.names() == ["a", "b"]
    assert list(reg) == ["a", "b"]
    assert "a" in reg
    assert "c" not in reg


def test_registry_duplicate_raises():
    reg: Registry = Registry("widget")
    reg.register("x")(1)
    with pytest.raises(ValueError, match="widget 'x' is registered twice"):
        reg.register("x")(2)
    assert reg.get("x") == 1  # the first registration is kept


def test_registry_unknown_lists_known():
    reg: Registry = Registry("widget")
    for name in ("zeta", "alpha", "mid"):
        reg.register(name)(name)
    with pytest.raises(UnknownNameError) as info:
        reg.get("beta")
    assert str(info.value) == "unknown widget 'beta'; known: alpha, mid, zeta"
    assert isinstance(info.value, KeyError)


def test_registry_empty_unknown():
    with pytest.raises(KeyError, match="unknown widget 'x'; known: $"):
        Registry("widget").get("x")

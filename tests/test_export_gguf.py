"""GGUF export through llama.cpp: converted, quantized, loaded and generating in llama-cpp-python, logits close
to the run, a GGUF LoRA beside it, and one chat template everywhere (GGUF metadata, Modelfile, safetensors)."""

from __future__ import annotations

import json
import shutil

import pytest
from go_render import render_with_go
from transformers import AutoTokenizer

from ftatlas.export import llama_cpp
from ftatlas.export.api import export_run
from ftatlas.export.modelfile import parse_modelfile
from ftatlas.export.source import ExportError
from ftatlas.pipeline import train
from ftatlas.recipe import build_recipe
from tests.conftest import tiny_recipe

try:
    llama_cpp.converters_dir()
    import llama_cpp as _lc  # noqa: F401
except (ExportError, ImportError) as e:
    pytest.skip(f"llama.cpp not installed (scripts/install_llama_cpp.sh): {e}", allow_module_level=True)

CONVERSATION = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Who is Ada?"},
                {"role": "assistant", "content": '{"name": "Ada"}'}, {"role": "user", "content": "And Alan?"}]



@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    recipe = tiny_recipe(tiny_model_dir, out, method={"name": "lora", "r": 4}, train={"max_steps": 3, "lr": 1e-2},
                         context={"name": "zero_shot", "system": "Answer in JSON."})
    return train(build_recipe(recipe), progress=False).run.path


@pytest.fixture(scope="module")
def f16(lora_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf-f16")
    return export_run(lora_run, "gguf", "f16", out, progress=False), out


def test_f16_gguf_matches_the_run_in_llama_cpp(f16):
    report, out = f16
    assert report["consumer"] == "llama.cpp" and (out / "model-f16.gguf").is_file()
    lp = report["logit_parity"]
    assert lp["within_tolerance"] and lp["rel_diff"] < 5e-3 and lp["top1_agreement"] > 0.95
    assert report["export"]["n"] == 4 and report["export"]["gen_tokens_per_s"] is not None  # 0 if it says EOS
    assert json.loads((out / "export.json").read_text())["logit_parity"] == lp


def test_llama_cpp_loads_the_gguf_tokenizes_like_the_run_and_generates(lora_run, f16):
    _, out = f16
    run_tok = AutoTokenizer.from_pretrained(lora_run / "adapter")
    prompt = run_tok.apply_chat_template(CONVERSATION[1:2], tokenize=False, add_generation_prompt=True)
    llm = llama_cpp.load(out / "model-f16.gguf", n_ctx=256)
    try:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        tokens = []
        for token in llm.generate(ids, temp=0.0):  # a random tiny model may say EOS first: take 5 regardless
            tokens.append(token)
            if len(tokens) == 5:
                break
        vocab = llm.n_vocab()
    finally:
        llm.close()
    assert ids == run_tok(prompt, add_special_tokens=False)["input_ids"]
    assert len(tokens) == 5 and all(0 <= t < vocab for t in tokens)


def test_q4_k_m_quantizes_smaller_and_is_reported(lora_run, f16, tmp_path):
    report = export_run(lora_run, "gguf", "q4_k_m", tmp_path, progress=False)
    assert (tmp_path / "model-q4_k_m.gguf").is_file() and report["size_bytes"] < f16[0]["size_bytes"]
    lp = report["logit_parity"]
    assert lp["tolerance"] is None and lp["within_tolerance"] is None  # judged by the metric interval
    assert 0 < lp["rel_diff"] and report["export"]["metrics"]


def test_lora_adapter_also_exports_as_gguf_lora(f16):
    report, out = f16
    lora = out / "adapter-f16.gguf"
    assert report["lora_gguf"] == str(lora) and lora.stat().st_size > 0
    from gguf import GGUFReader

    fields = GGUFReader(str(lora)).fields
    assert bytes(fields["general.type"].parts[-1]).decode() == "adapter"


def _gguf_string(path, key: str) -> str:
    from gguf import GGUFReader

    return bytes(GGUFReader(str(path)).fields[key].parts[-1]).decode()


def test_one_chat_template_in_gguf_modelfile_and_safetensors(lora_run, f16, tmp_path):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    _, out = f16
    run_tok = AutoTokenizer.from_pretrained(lora_run / "adapter")
    expected = run_tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    # GGUF metadata, rendered as llama-cpp-python's Jinja2ChatFormatter does
    gguf_template = _gguf_string(out / "model-f16.gguf", "tokenizer.chat_template")
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    assert env.from_string(gguf_template).render(messages=CONVERSATION, add_generation_prompt=True) == expected
    # safetensors export: the tokenizer it ships
    export_run(lora_run, "safetensors", "bf16", tmp_path / "st", progress=False)
    st_tok = AutoTokenizer.from_pretrained(tmp_path / "st" / "model")
    assert st_tok.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True) == expected
    # Modelfile: parses, stops on the token the run ends answers with, carries the run's system prompt
    directives = parse_modelfile((out / "Modelfile").read_text())
    keys = dict(directives)
    assert keys["FROM"] == "./model-f16.gguf" and keys["SYSTEM"] == "Answer in JSON."
    stops = [v for k, v in directives if k == "PARAMETER" and v.startswith("stop ")]
    assert stops == [f'stop "{run_tok.eos_token}"']
    from gguf import GGUFReader

    eos = GGUFReader(str(out / "model-f16.gguf")).fields["tokenizer.ggml.eos_token_id"]
    assert int(eos.parts[-1][0]) == run_tok.eos_token_id
    if shutil.which("go") is None:
        pytest.skip("go is not installed: the Modelfile TEMPLATE was parsed but not rendered by Go text/template")
    assert render_with_go(tmp_path, keys["TEMPLATE"], CONVERSATION) == expected


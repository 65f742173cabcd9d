"""The heap allocator: finding tcmalloc/jemalloc, FTATLAS_ALLOCATOR, the preload env, and the ftatlas command's
re-execution onto it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftatlas import allocator
from tests.conftest import tiny_recipe

ACTIVE = "from ftatlas.allocator import active; print(active())"


def _lib(d: Path, name: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(b"")
    return d / name


def test_find_library_prefers_tcmalloc(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    je = _lib(a, "libjemalloc.so.2")
    assert allocator.find_library((str(a),)) == je
    tc = _lib(b, "libtcmalloc_minimal.so.4")
    assert allocator.find_library((str(a), str(b))) == tc
    assert allocator.find_library((str(tmp_path / "empty"),)) is None
    assert allocator.name_of(tc) == "tcmalloc" and allocator.name_of(je) == "jemalloc"


def test_wanted_follows_the_env(tmp_path, monkeypatch):
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.wanted() is None and allocator.reexec_argv() is None
    monkeypatch.setenv(allocator.ENV, str(tmp_path / "missing.so"))
    with pytest.raises(FileNotFoundError, match="missing.so.*auto, system"):
        allocator.wanted()
    lib = _lib(tmp_path, "libtcmalloc_minimal.so.4")
    monkeypatch.setenv(allocator.ENV, str(lib))
    assert allocator.wanted() == lib


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux-only")
def test_preload_env_prepends_once(tmp_path, monkeypatch):
    lib = _lib(tmp_path, "libtcmalloc_minimal.so.4")
    monkeypatch.setenv(allocator.ENV, str(lib))
    env = allocator.preload_env({"LD_PRELOAD": "/other.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"] == f"{lib} /other.so" and env["PATH"] == "/bin"
    assert allocator.preload_env(env)["LD_PRELOAD"] == env["LD_PRELOAD"]
    monkeypatch.setenv(allocator.ENV, "system")
    assert "LD_PRELOAD" not in allocator.preload_env({"PATH": "/bin"})


REAL = allocator.find_library()
needs_lib = pytest.mark.skipif(REAL is None or not sys.platform.startswith("linux"),
                               reason=f"no tcmalloc/jemalloc installed ({allocator.INSTALL_HINT})")


@needs_lib
def test_subprocess_env_runs_on_the_allocator(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "auto")
    got = subprocess.run([sys.executable, "-c", ACTIVE], capture_output=True, text=True,
                         env=allocator.preload_env(), check=True).stdout.strip()
    assert got == allocator.name_of(REAL)


def _ftatlas(env_value: str, *args: str) -> subprocess.CompletedProcess:
    import os

    exe = Path(sys.executable).parent / "ftatlas"
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "_FTATLAS_REEXEC")}
    env[allocator.ENV] = env_value
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


@needs_lib
def test_ftatlas_train_reexecs_onto_the_allocator_and_says_so(tiny_model_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_model_dir, tmp_path, train={"max_steps": 1},
                                                 eval={"max_examples": 1, "decode": {"max_new_tokens": 2}})))
    res = _ftatlas("auto", "train", str(recipe))
    assert res.returncode == 0, res.stderr
    assert f"heap allocator {allocator.name_of(REAL)}" in " ".join(res.stderr.split())  # rich wraps long lines
    summary = yaml.safe_load((tmp_path / "tiny" / "summary.json").read_text())  # JSON is YAML
    assert summary["heap_allocator"] == allocator.name_of(REAL)
    assert f"heap allocator {allocator.name_of(REAL)}" in (tmp_path / "tiny" / "report.md").read_text()


@needs_lib
def test_advise_reports_the_allocator_training_uses(tiny_model_dir, chat_file, monkeypatch):
    """advise runs as started (no re-exec) and reports the allocator ftatlas train would run on."""
    from ftatlas.advise.advisor import advise
    from ftatlas.advise.render import summary_lines

    monkeypatch.setattr(allocator, "active", lambda: "glibc")  # this process as a plain `ftatlas advise` starts
    for env, name, note in (("auto", allocator.name_of(REAL), False), ("system", "glibc", True)):
        monkeypatch.setenv(allocator.ENV, env)
        a = advise(str(tiny_model_dir), str(chat_file), "task", device="cpu", memory_gb=4)
        assert f"heap allocator {name}" in summary_lines(a)[-1]
        assert any("assume tcmalloc" in n for n in a.notes) == note


def test_ftatlas_command_names_a_missing_library(tmp_path):
    res = _ftatlas(str(tmp_path / "nope.so"), "train", "--help")
    assert res.returncode == 2 and "nope.so" in res.stderr and "Traceback" not in res.stderr


def test_only_training_verbs_reexec(tmp_path, monkeypatch):
    lib = _lib(tmp_path, "libtcmalloc_minimal.so.4")
    monkeypatch.delenv("_FTATLAS_REEXEC", raising=False)
    monkeypatch.setattr(allocator, "active", lambda: "glibc")
    monkeypatch.setattr(allocator, "cuda_host", lambda: False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    for env in ("auto", str(lib)):
        monkeypatch.setenv(allocator.ENV, env)
        monkeypatch.setattr(allocator, "find_library", lambda *a: lib)
        for args in (["--help"], ["config", "validate", "r.yaml"], ["eval", "runs/x"], ["chat", "runs/x"], []):
            assert allocator.reexec_argv(args) is None, args
        for args in (["train", "r.yaml"], ["quickstart"], ["train", "--help"]):
            assert allocator.reexec_argv(args)[-len(args):] == args
    monkeypatch.setattr(allocator, "cuda_host", lambda: True)  # CUDA host: auto preloads nothing ...
    monkeypatch.setenv(allocator.ENV, "auto")
    assert allocator.reexec_argv(["train", "r.yaml"]) is None and allocator.for_training() == "glibc"
    monkeypatch.setenv(allocator.ENV, str(lib))  # ... an explicit library still does
    assert allocator.reexec_argv(["train", "r.yaml"]) is not None and allocator.for_training() == "tcmalloc"


def test_other_verbs_never_consult_the_allocator(tiny_model_dir, tmp_path):
    """A bad FTATLAS_ALLOCATOR stops only the verbs that would preload it: config validate runs (--help: above)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name: {tiny_model_dir}}}\ndata: {{builtin: contacts}}\n")
    res = _ftatlas(str(tmp_path / "nope.so"), "config", "validate", str(recipe))
    assert res.returncode == 0, res.stderr


RELEASE = """
from ftatlas.allocator import active, release_free_memory
def rss():
    return int(next(ln for ln in open("/proc/self/status") if ln.startswith("VmRSS")).split()[1]) >> 10
blocks = [b"x" * 2**20 for _ in range(300)]  # 300 MiB of touched heap, then freed: the allocator keeps it
del blocks
before = rss()
ok = release_free_memory()
print(active(), ok, before - rss())
"""


@needs_lib
def test_release_free_memory_returns_freed_heap_to_the_os(monkeypatch):
    """The dry run's baseline is taken after this, so free heap left by loading is not a hidden credit."""
    monkeypatch.setenv(allocator.ENV, "auto")
    name, ok, dropped = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True,
                                       env=allocator.preload_env(), check=True).stdout.split()
    assert name == allocator.name_of(REAL) and ok == "True"
    assert int(dropped) > 200  # MiB given back

"""Which C heap allocator this process uses, and how ftatlas gets a better one than glibc malloc on CPU.

Why: on CPU, training memory is the process's resident set, and glibc malloc keeps freed heap pages. Under
gradient checkpointing it grows its heap by about one block's freed temporaries per block in the first step,
so peak RSS varies from run to run and reaches 2-3x the live tensors (SmolLM2 LoRA, batch 8 x 128 tokens:
720-1170 MiB over six identical runs, live tensors ~375 MiB). tcmalloc (or jemalloc) reuses them: the same
run peaks at ~390 MiB every time, and its steps are as fast or faster. PyTorch's CPU performance guides
recommend the same. ``bench/advisor_accuracy.py`` measures the difference.

The allocator must be chosen before the process starts (``LD_PRELOAD``), so only where it pays: the commands
that train in their own process (``PRELOAD_COMMANDS``: ``ftatlas train``, ``ftatlas quickstart``) re-execute
themselves once with the library preloaded (``ftatlas.launch``), and the subprocesses that train or measure
(``advise --measure`` dry runs, arena cells) are started with it (``preload_env``). Other verbs (``--help``,
``config validate``, ``eval``, ``chat``, ...) run as started. On a CUDA host (an NVIDIA driver present) ``auto``
preloads nothing: GPU memory is not this heap. A run prints the allocator it runs on next to its device.
``FTATLAS_ALLOCATOR``: ``auto`` (default: tcmalloc, else jemalloc, else glibc), ``system`` (never preload), or
the path of a shared library to preload (also on CUDA hosts).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

ENV = "FTATLAS_ALLOCATOR"
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
# (name reported, shared-library file names), in order of preference
CANDIDATES = (("tcmalloc", ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")), ("jemalloc", ("libjemalloc.so.2",)))
INSTALL_HINT = "apt-get install libtcmalloc-minimal4 (Debian/Ubuntu) or your system's gperftools package"
PRELOAD_COMMANDS = ("train", "quickstart")  # verbs that train in this process


def find_library(dirs: tuple[str, ...] = _LIB_DIRS) -> Path | None:
    """The preferred allocator library on this machine (tcmalloc, then jemalloc), or None."""
    for _, files in CANDIDATES:
        for d in dirs:
            for f in files:
                if (Path(d) / f).is_file():
                    return Path(d) / f
    return None


def name_of(path: str | Path) -> str:
    """``tcmalloc``/``jemalloc`` for a library path, else its file name."""
    base = Path(path).name
    return next((name for name, files in CANDIDATES if any(base.startswith(f.split(".so")[0]) for f in files)),
                base)


def active() -> str:
    """The allocator this process runs on: ``tcmalloc``, ``jemalloc`` or ``glibc`` (read from its memory maps)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "glibc" if sys.platform.startswith("linux") else "system"
    for name, files in CANDIDATES:
        if any(f.split(".so")[0] + ".so" in maps for f in files):
            return name
    return "glibc"


def wanted() -> Path | None:
    """The library ``FTATLAS_ALLOCATOR`` asks for (None: keep the system allocator)."""
    choice = os.environ.get(ENV, "auto").strip()
    if choice in ("system", "glibc", "none", "off"):
        return None
    if choice in ("", "auto"):
        return find_library()
    path = Path(choice)
    if not path.is_file():
        raise FileNotFoundError(f"{ENV}={choice!r}: no such library; use auto, system or a path to a .so file")
    return path


def preload_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default: this process's) with the wanted allocator preloaded, if there is one."""
    out = dict(os.environ if env is None else env)
    lib = wanted() if sys.platform.startswith("linux") else None
    if lib is None:
        return out
    current = out.get("LD_PRELOAD", "")
    if str(lib) not in current.split():
        out["LD_PRELOAD"] = f"{lib} {current}".strip()
    return out


def cuda_host() -> bool:
    """An NVIDIA driver is loaded on this machine (checked without importing torch)."""
    return Path("/proc/driver/nvidia/version").exists()


def for_training() -> str:
    """The allocator ``ftatlas train`` runs on here: the one it would preload, else this process's."""
    try:
        lib = wanted() if sys.platform.startswith("linux") else None
    except FileNotFoundError:
        lib = None
    if lib is None or (cuda_host() and os.environ.get(ENV, "auto").strip() in ("", "auto")):
        return active()
    return name_of(lib)


def reexec_argv(args: list[str] | None = None) -> list[str] | None:
    """The argv to re-execute the ``ftatlas`` command ``args`` (default: this process's) with the wanted allocator,
    or None: not a training verb (``PRELOAD_COMMANDS``), a CUDA host under ``auto``, not Linux, already
    re-executed once, already on the wanted allocator, or none wanted or found."""
    args = sys.argv[1:] if args is None else args
    verb = next((a for a in args if not a.startswith("-")), None)
    if verb not in PRELOAD_COMMANDS or not sys.platform.startswith("linux") or os.environ.get("_FTATLAS_REEXEC"):
        return None
    if cuda_host() and os.environ.get(ENV, "auto").strip() in ("", "auto"):
        return None
    lib = wanted()
    if lib is None or active() == name_of(lib):
        return None
    return [sys.executable, "-m", "ftatlas.cli", *args]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None off Linux, or where no libc with it is found, as on musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):  # musl or no libc found: nothing to trim
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS: tcmalloc ``MallocExtension_ReleaseFreeMemory``, jemalloc's purge of
    every arena, glibc ``malloc_trim(0)``. False where this process's allocator offers none."""
    name = active()
    try:
        if name == "tcmalloc":
            ctypes.CDLL(None).MallocExtension_ReleaseFreeMemory()
        elif name == "jemalloc":
            mallctl = ctypes.CDLL(None).mallctl
            if mallctl(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0)) != 0:  # 4096: MALLCTL_ARENAS_ALL
                return False
        elif name == "glibc" and _malloc_trim() is not None:
            _malloc_trim()(0)
        else:
            return False
    except (OSError, AttributeError):  # symbol not exported (a build without the extension API, musl)
        return False
    return True

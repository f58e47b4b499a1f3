"""The native host core (``_native/core.c``): build, load and choose it.

The core is a small C extension compiled by the machine's C compiler against
the running Python's headers, once per source and interpreter, into the kit
cache (``$WASMKIT_CACHE/native/``, default ``~/.cache/wasmkit``); ``make``
builds it at set-up (``make native``: :func:`main`), and a process
that finds no build makes one on first use (about a second). It calls the
wasmtime C API through the addresses of the library the ``wasmtime`` wheel
loaded, so it needs no wasmtime headers or link step.

Which host runs: ``WASMKIT_HOST=native`` (the default when the core builds),
``python`` (the pure-Python reference host: host/vm.py's ctypes crossings,
host/memory.py) or ``auto`` (native if it can be had, else Python with one
notice line on stderr). ``native`` that cannot be had is an error.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from wasmkit.host.vm import c_api_addresses, c_struct_sizes

SOURCE = Path(__file__).resolve().parent / "_native" / "core.c"
MODULE = "_wasmkit_core"
HOSTS = ("auto", "native", "python")
_FUNCTIONS = (
    "wasmtime_func_call_unchecked",
    "wasmtime_func_new_unchecked",
    "wasmtime_memory_data",
    "wasmtime_memory_data_size",
    "wasmtime_trap_new",
    "wasmtime_context_set_epoch_deadline",
)

_lock = threading.Lock()
_loaded: ModuleType | None = None
_failure: str | None = None
_noticed = False


class NativeUnavailable(RuntimeError):
    """The native core cannot be built or loaded here (the message says why)."""


def _cache_dir() -> Path:
    root = os.environ.get("WASMKIT_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "wasmkit"
    )
    return Path(root) / "native"


def _compiler() -> list[str] | None:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    argv = cc.split()
    if shutil.which(argv[0]) is None:
        argv = ["cc"]
        if shutil.which("cc") is None:
            return None
    return argv


def build_key() -> str:
    """Digest of what the build depends on: source, interpreter, ABI tag."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(sys.version.encode())
    digest.update(str(sysconfig.get_config_var("EXT_SUFFIX")).encode())
    return digest.hexdigest()[:20]


def built_path() -> Path:
    """Where the build for this source and interpreter lives."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return _cache_dir() / build_key() / f"{MODULE}{suffix}"


def build(*, quiet: bool = True) -> Path:
    """Compile the core unless a build for this source and Python exists.

    Raises:
        NativeUnavailable: no C compiler, no Python headers, or the compile
            failed (its first error line in the message).
    """
    target = built_path()
    if target.is_file():
        return target
    cc = _compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler (cc) on PATH")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        raise NativeUnavailable(f"no Python.h in {include} (Python's headers)")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    argv = [
        *cc,
        "-std=c11",
        "-D_POSIX_C_SOURCE=200809L",
        "-O2",
        "-fPIC",
        "-shared",
        "-Wall",
        "-Wno-missing-field-initializers",
        f"-I{include}",
        "-o",
        tmp,
        str(SOURCE),
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        os.unlink(tmp)
        raise NativeUnavailable(f"{cc[0]} could not run: {exc}") from exc
    if done.returncode != 0:
        os.unlink(tmp)
        errors = [line for line in done.stderr.splitlines() if "error" in line]
        first = (errors or done.stderr.splitlines() or ["(no output)"])[0]
        raise NativeUnavailable(f"{cc[0]} failed on {SOURCE.name}: {first}")
    if not quiet and done.stderr.strip():
        print(done.stderr, file=sys.stderr)
    os.replace(tmp, target)
    return target


def _load(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(MODULE, str(path))
    spec = importlib.util.spec_from_file_location(MODULE, path, loader=loader)
    if spec is None:
        raise NativeUnavailable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    module.bind(c_api_addresses(_FUNCTIONS))
    if c_struct_sizes() != (module.MEMORY_T_SIZE, module.FUNC_T_SIZE):
        raise NativeUnavailable(
            "the core's wasmtime struct sizes differ from the wheel's"
        )
    return module


def core() -> ModuleType:
    """The loaded native module (built first if need be).

    Raises:
        NativeUnavailable: it cannot be built or loaded here.
    """
    global _loaded, _failure
    with _lock:
        if _loaded is not None:
            return _loaded
        if _failure is not None:
            raise NativeUnavailable(_failure)
        try:
            _loaded = _load(build())
        except NativeUnavailable as exc:
            _failure = str(exc)
            raise
        except (OSError, ImportError) as exc:
            _failure = f"cannot load the native core: {exc}"
            raise NativeUnavailable(_failure) from exc
        return _loaded


def selected() -> str:
    """``WASMKIT_HOST`` as given (``auto`` when unset)."""
    value = os.environ.get("WASMKIT_HOST", "auto").strip().lower() or "auto"
    if value not in HOSTS:
        raise ValueError(f"WASMKIT_HOST={value!r}: expected one of {', '.join(HOSTS)}")
    return value


def resolve(host: str | None = None) -> Any:
    """The native module to use, or ``None`` for the pure-Python host.

    ``host``: ``native``, ``python`` or ``auto``; ``None`` reads
    ``WASMKIT_HOST``. With ``auto`` a core that cannot be had gives one
    notice line on stderr (once per process) and the Python host.

    Raises:
        NativeUnavailable: ``native`` was asked for and cannot be had.
        ValueError: an unknown host name.
    """
    global _noticed
    host = selected() if host is None else host
    if host not in HOSTS:
        raise ValueError(f"host={host!r}: expected one of {', '.join(HOSTS)}")
    if host == "python":
        return None
    try:
        return core()
    except NativeUnavailable as exc:
        if host == "native":
            raise
        if not _noticed:
            _noticed = True
            print(f"wasmkit: pure-Python host ({exc})", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """``build``: build (or find) the core and print its path (``make native``)."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m wasmkit.host.native build", file=sys.stderr)
        return 2
    try:
        path = build(quiet=False)
        _load(path)
    except NativeUnavailable as exc:
        print(f"wasmkit: native host core not built: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

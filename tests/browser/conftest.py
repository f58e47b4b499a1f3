"""JupyterLab on localhost and headless Chromium for the real-browser tests.

``lab`` starts JupyterLab (free port, random token, no browser) on a temporary
root laid out like the repository: ``notebooks/`` holds a copy of the tutorial
``08-replay-a-capture.ipynb`` and ``samples`` links to the repository's, so the
notebook's ``../samples/...`` paths work. Jupyter's config, data, runtime,
settings and workspace folders are private so nothing of the machine's leaks
in; kernels are the venv's Python (the server runs on it) and build with the
usual wasmkit cache (``WASMKIT_CACHE``, where ``make test`` set up the
toolchains the tutorial's filters need). ``browser`` launches
Debian's Chromium through Playwright (never a downloaded browser; make test
installs it with scripts/setup-browser.sh). Both stop at the end, also when a
test fails; a failing test leaves a screenshot in build/test-artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "08-replay-a-capture.ipynb"
NOTEBOOK_IN_LAB = f"notebooks/{NOTEBOOK.name}"
"""The notebook's path under the server's root."""
CAPTURE = ROOT / "samples" / "captures" / "api.flow"
ARTIFACTS = ROOT / "build" / "test-artifacts"
CHROMIUM = os.environ.get("WASMKIT_CHROMIUM", "/usr/bin/chromium")

SERVER_START_TIMEOUT = 60.0  # s, until /api/status answers


@dataclass(frozen=True, slots=True)
class Lab:
    """A running JupyterLab server."""

    base_url: str
    """``http://127.0.0.1:PORT/``."""
    token: str
    root_dir: Path
    log: Path
    """The server's stdout and stderr."""

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _wait_for_status(lab: Lab, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    request = urllib.request.Request(
        f"{lab.base_url}api/status", headers={"Authorization": f"token {lab.token}"}
    )
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"JupyterLab exited with {proc.returncode} before answering "
                f"/api/status; log {lab.log}:\n{log_tail(lab.log)}"
            )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    json.load(response)
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(
                f"JupyterLab did not answer /api/status within "
                f"{SERVER_START_TIMEOUT:.0f} s; log {lab.log}:\n{log_tail(lab.log)}"
            )
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # SIGTERM lets the server shut its kernels down; then make sure the whole
    # session it leads (server and kernels) is gone.
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab serving a copy of tutorial 08 next to the repository's samples."""
    base = tmp_path_factory.mktemp("lab")
    root_dir = base / "root"
    (root_dir / NOTEBOOK.parent.name).mkdir(parents=True)
    shutil.copy(NOTEBOOK, root_dir / NOTEBOOK_IN_LAB)
    (root_dir / "samples").symlink_to(ROOT / "samples", target_is_directory=True)
    jupyter = {name: base / name for name in ("config", "data", "runtime")}
    settings = base / "user-settings"
    # No "fetch official Jupyter news?" toast over the notebook.
    notification = settings / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Every cell in the DOM and laid out, also those scrolled out of view (the
    # default windowing skips their rendering).
    tracker = settings / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"})
    )
    for d in jupyter.values():
        d.mkdir()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(jupyter["config"]),
        "JUPYTER_DATA_DIR": str(jupyter["data"]),
        "JUPYTER_RUNTIME_DIR": str(jupyter["runtime"]),
        "JUPYTER_PLATFORM_DIRS": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    port = _free_port()
    lab = Lab(
        base_url=f"http://127.0.0.1:{port}/",
        token=secrets.token_hex(16),
        root_dir=root_dir,
        log=base / "jupyterlab.log",
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={lab.token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.allow_root=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with open(lab.log, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_status(lab, proc)
        yield lab
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium, driven by Playwright."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run 'bash scripts/setup-browser.sh' "
            "(make test does) to install Debian's chromium"
        )
    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox refuses to run as root.
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield b
        finally:
            b.close()


_FAILED = pytest.StashKey[bool]()
_ARTIFACTS = pytest.StashKey[list[Path]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None]:
    report = yield
    if report.when == "call":  # type: ignore[attr-defined]
        item.stash[_FAILED] = report.failed  # type: ignore[attr-defined]
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    paths = config.stash.get(_ARTIFACTS, [])
    if paths:
        terminalreporter.section("browser test artifacts")
        for path in paths:
            terminalreporter.write_line(str(path))


def _note_artifact(config: pytest.Config, path: Path) -> None:
    config.stash.setdefault(_ARTIFACTS, []).append(path)


@pytest.fixture(scope="session")
def artifact(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``artifact(name)``: a path in build/test-artifacts, listed after the run.

    Failure screenshots of an earlier run are removed first.
    """
    for old in ARTIFACTS.glob("failure-*.png"):
        old.unlink()

    def make(name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        _note_artifact(request.config, path)
        return path

    return make


@pytest.fixture(autouse=True)
def _screenshot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    # A test of this folder that uses a ``page`` fixture and fails leaves a
    # screenshot of the page behind.
    yield
    if "page" not in request.fixturenames or not request.node.stash.get(_FAILED, False):
        return
    path = request.getfixturevalue("artifact")(f"failure-{request.node.name}.png")
    with contextlib.suppress(Exception):  # the page may be gone with the failure
        request.getfixturevalue("page").screenshot(path=str(path))

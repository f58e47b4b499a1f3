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

The helpers below the fixtures are shared by the test modules: running every
cell of a notebook open in the lab (:func:`run_all_cells`), switching the
theme (:func:`set_theme`) and the contrast of rendered text
(:func:`contrast`, :data:`MIN_CONTRAST`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from playwright.sync_api import Browser, Locator, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

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


# ----------------------------------------------------------------- helpers --

MIN_CONTRAST = 4.5
"""WCAG AA for normal text: text vs background contrast ratio."""


def exact(text: str) -> re.Pattern[str]:
    """A pattern matching ``text`` alone (spaces around allowed)."""
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


# Colours as the page renders them: a background is the element's own
# composited over every ancestor's (translucent tints, color-mix results),
# the text colour over that.
COLOURS_JS = r"""
(el) => {
  const parse = (c) => {
    let m = c.match(/^rgba?\(([^)]*)\)/);
    if (m) {
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    }
    m = c.match(/^color\(srgb\s+([^)]*)\)/);
    if (m) {
      const p = m[1].split(/[\s\/]+/).filter(Boolean).map(Number);
      return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
    }
    throw new Error(`unparsed colour ${c}`);
  };
  const over = (top, under) =>
    [0, 1, 2].map((i) => top[3] * top[i] + (1 - top[3]) * under[i]).concat([1]);
  const chain = [];
  for (let e = el; e; e = e.parentElement) chain.push(getComputedStyle(e).backgroundColor);
  let bg = [255, 255, 255, 1];  // the canvas
  for (const c of chain.reverse()) bg = over(parse(c), bg);
  const fg = over(parse(getComputedStyle(el).color), bg);
  return { bg: bg.slice(0, 3), fg: fg.slice(0, 3), css: getComputedStyle(el).backgroundColor };
}
"""


def colours(element: Locator) -> dict[str, Any]:
    """The rendered background and text colours (``bg``, ``fg``: RGB 0-255)."""
    return element.evaluate(COLOURS_JS)  # type: ignore[no-any-return]


def luminance(rgb: list[float]) -> float:
    """The WCAG relative luminance of an RGB colour (0-255 channels)."""

    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(element: Locator) -> float:
    """The WCAG contrast ratio of the element's text over its background."""
    c = colours(element)
    hi, lo = sorted((luminance(c["fg"]), luminance(c["bg"])), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def low_contrast(checked: dict[str, Locator]) -> list[tuple[str, str, float]]:
    """Each element of ``checked`` (what → locator) below :data:`MIN_CONTRAST`.

    Fails when a locator finds nothing (a check that checks nothing).
    """
    low = []
    for what, loc in checked.items():
        n = loc.count()
        assert n > 0, f"nothing to check: {what}"
        for i in range(n):
            ratio = contrast(loc.nth(i))
            if not ratio >= MIN_CONTRAST:
                low.append((what, loc.nth(i).inner_text()[:30], round(ratio, 2)))
    return low


def set_theme(page: Page, theme: str, timeout: float = 30_000) -> None:
    """Settings → Theme → ``theme``, then wait until JupyterLab applied it."""
    page.locator(".lm-MenuBar-itemLabel", has_text=exact("Settings")).click()
    page.locator(".lm-Menu-itemLabel", has_text=exact("Theme")).click()
    page.locator(".lm-Menu-itemLabel", has_text=exact(theme)).click()
    light = "true" if theme == "JupyterLab Light" else "false"
    page.wait_for_function(
        "arg => document.body.dataset.jpThemeName === arg[0]"
        " && document.body.dataset.jpThemeLight === arg[1]",
        arg=[theme, light],
        timeout=timeout,
    )
    page.wait_for_timeout(300)  # the theme's stylesheet applied


def wait_for_kernel_connection(lab: Lab, timeout: float) -> None:
    """Wait until the server sees a page connected to a kernel (``timeout`` s)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        lab.url("api/kernels"), headers={"Authorization": f"token {lab.token}"}
    )
    kernels: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=5) as response:
            kernels = json.load(response)
        if any(k.get("connections", 0) > 0 for k in kernels):
            return
        time.sleep(0.2)
    pytest.fail(f"no kernel connected within {timeout:.0f} s: {kernels}")


def shutdown_kernels(lab: Lab) -> None:
    """Shut every kernel of the server down (a module's kernel, its Dask
    workers, must not load the machine for the next module)."""
    headers = {"Authorization": f"token {lab.token}"}
    listing = urllib.request.Request(lab.url("api/kernels"), headers=headers)
    with urllib.request.urlopen(listing, timeout=10) as response:
        kernels = json.load(response)
    for kernel in kernels:
        request = urllib.request.Request(
            lab.url(f"api/kernels/{kernel['id']}"), headers=headers, method="DELETE"
        )
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=30).close()


def unfinished_cells(page: Page) -> str:
    """Each code cell without an execution count: its prompt, first source
    line and the end of its output so far."""
    cells = page.evaluate(
        """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')]
             .map(cell => ({
               prompt: cell.querySelector('.jp-InputPrompt')?.textContent ?? '',
               source: (cell.querySelector('.jp-InputArea-editor')?.innerText ?? '')
                 .split('\\n')[0],
               output: (cell.querySelector('.jp-OutputArea')?.innerText ?? '').slice(-300),
             }))
             .filter(c => !/\\[\\d+\\]/.test(c.prompt))"""
    )
    return (
        "\n".join(
            f"  {c['prompt'].strip() or '[ ]'} {c['source']!r}: {c['output']!r}"
            for c in cells
        )
        or "  (none)"
    )


def run_all_cells(
    page: Page,
    lab: Lab,
    path: str,
    *,
    load_timeout: float = 30_000,
    run_timeout: float = 300_000,
) -> None:
    """Open notebook ``path`` (under the lab's root) and Run → Run All Cells.

    Returns once every code cell has an execution count and the kernel is
    idle; fails naming the cells not run, or the cells that raised.
    Timeouts in ms.
    """
    # A workspace of its own: JupyterLab would otherwise restore the panels
    # an earlier test module left open (their cells and indicators too).
    workspace = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")
    page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{path}"), timeout=load_timeout)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=load_timeout)
    # Run only once the page talks to a started kernel: the execution
    # indicator says "idle" before the kernel exists too (and Run All then
    # does nothing), so first wait until the server sees the page's kernel
    # connection, then for the page to call the kernel idle.
    wait_for_kernel_connection(lab, load_timeout / 1000)
    # A kernel starting on a loaded machine (another module's kernel and
    # Dask workers still running) may take longer than the page's load. A
    # page can also miss its kernel's first status (the status bar then says
    # "Unknown" for good, seen with Chrome for Testing): it is loaded again
    # once.
    idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    for attempt in range(2):
        try:
            idle.wait_for(
                state="attached", timeout=max(load_timeout, 60_000 * (attempt + 1))
            )
            break
        except PlaywrightTimeoutError:
            if attempt:
                raise
            page.reload(timeout=load_timeout)
            page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(
                timeout=load_timeout
            )
            wait_for_kernel_connection(lab, load_timeout / 1000)
    # The first cell starts within seconds of Run All; a menu click that did
    # not take (the menu closed before the item got it) is made once more.
    for attempt in range(2):
        page.locator(".jp-NotebookPanel .jp-Notebook").click()
        page.locator(".lm-MenuBar-itemLabel", has_text=exact("Run")).click()
        page.get_by_role("menuitem", name=exact("Run All Cells")).click()
        try:
            page.wait_for_function(
                """() => {
                     const first = document.querySelector(
                       '.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt');
                     return first && /\\[(\\*|\\d+)\\]/.test(first.textContent);
                   }""",
                timeout=load_timeout,
            )
            break
        except PlaywrightTimeoutError:
            if attempt:
                pytest.fail(
                    "Run All Cells started no cell (twice); cells:\n"
                    + unfinished_cells(page)
                )
    try:
        page.wait_for_function(
            """() => {
                 const prompts = [...document.querySelectorAll(
                   '.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
                 return prompts.length > 0
                   && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
               }""",
            timeout=run_timeout,
        )
    except PlaywrightTimeoutError:
        pytest.fail(
            f"Run All Cells did not finish within {run_timeout // 1000:.0f} s; "
            "cells not run:\n"
            + unfinished_cells(page)
            + f"\nserver log ({lab.log}):\n"
            + log_tail(lab.log)
        )
    page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(
        state="attached", timeout=run_timeout
    )
    errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']")
    if errors.count():
        pytest.fail("a notebook cell failed:\n" + "\n".join(errors.all_inner_texts()))

"""One Envoy process: started on loopback, waited for, stopped by its pid.

Every process started here is also stopped when the interpreter exits
(``atexit``), so an exception between start and stop leaves none running.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from wasmkit.envoy.binary import find_envoy
from wasmkit.envoy.collector import LOG_FORMAT, EnvoyLine, StderrCollector
from wasmkit.errors import EnvoyError

DEFAULT_COMPONENT_LEVELS = "wasm:debug,http:debug,lua:info"
"""``--component-log-level``: filter logs (``wasm``), local reply details
(``http``) and the collector's markers (``lua``)."""

START_TIMEOUT_S = 120.0
"""How long Envoy may take to become ready (V8 compiles the module first)."""

_RUNNING: dict[int, subprocess.Popen[str]] = {}
_RUNNING_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _RUNNING_LOCK:
        procs = list(_RUNNING.items())
        _RUNNING.clear()
    for pid, proc in procs:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(5)


atexit.register(_stop_all_at_exit)


def running_pids() -> list[int]:
    """The pids of the Envoy processes this interpreter started and has not stopped."""
    with _RUNNING_LOCK:
        return sorted(_RUNNING)


class EnvoyProcess:
    """An Envoy started with a bootstrap file, on loopback.

    Started and stopped explicitly (:meth:`start`, :meth:`stop`) or as a
    context manager. Runs with ``--concurrency 1`` (one worker thread, so
    requests are handled in the order they are sent), a unique ``--base-id``
    and the log format :mod:`wasmkit.envoy.collector` parses.

    Args:
        config_path: the bootstrap (JSON).
        workdir: a directory for Envoy's files (the admin address).
        binary: the Envoy binary (default: :func:`find_envoy`).
        component_levels: ``--component-log-level``.
        extra_args: more command-line arguments.
    """

    def __init__(
        self,
        config_path: Path,
        workdir: Path,
        *,
        binary: Path | None = None,
        component_levels: str = DEFAULT_COMPONENT_LEVELS,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config_path = config_path
        self.workdir = workdir
        self.binary = binary or find_envoy()
        self.component_levels = component_levels
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[str] | None = None
        self.collector: StderrCollector | None = None
        self.admin_url = ""
        self.base_id = 0
        self.start_seconds = 0.0
        """How long the last :meth:`start` took until Envoy was ready (s)."""
        self.last_pid: int | None = None
        """The pid of the last process started (kept after it stopped)."""

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        """The command line :meth:`start` runs."""
        return [
            str(self.binary),
            "-c",
            str(self.config_path),
            "--concurrency",
            "1",
            "--base-id",
            str(self.base_id),
            "--admin-address-path",
            str(self.workdir / "admin-address"),
            "--component-log-level",
            self.component_levels,
            "--log-format",
            LOG_FORMAT,
            "--log-format-escaped",
            # The access log (each stream's details) is written at once, so
            # that it comes before the next exchange's marker.
            "--file-flush-interval-msec",
            "1",
            *self.extra_args,
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start Envoy and wait until it is ready to take requests.

        Raises:
            EnvoyError: Envoy exited (the message is Envoy's own error, e.g.
                a filter it refuses to load) or was not ready in ``timeout``
                seconds (it is stopped then).
        """
        if self.proc is not None:
            raise RuntimeError("Envoy is already running")
        began = time.monotonic()
        # Unique per process and call: concurrent Envoys must not share one.
        self.base_id = random.SystemRandom().randrange(1, 1 << 20)
        (self.workdir / "admin-address").unlink(missing_ok=True)
        proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C in a notebook does not reach it
        )
        with _RUNNING_LOCK:
            _RUNNING[proc.pid] = proc
        self.proc = proc
        self.last_pid = proc.pid
        assert proc.stderr is not None
        self.collector = StderrCollector(proc.stderr)
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop(grace=1.0)  # a start-up stuck in V8 ignores SIGTERM
            raise
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        address_file = self.workdir / "admin-address"
        while True:
            if self.proc is None or self.proc.poll() is not None:
                raise self._exited()
            if not self.admin_url and address_file.is_file():
                text = address_file.read_text().strip()
                if text:
                    self.admin_url = f"http://{text}"
            if self.admin_url:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    status, _ = self.admin("/ready")
                    if status == 200:
                        return
            if time.monotonic() > deadline:
                raise EnvoyError(
                    "Envoy was not ready in time (V8 compiles the module at "
                    "start-up; is the filter's start-up looping?)",
                    stderr=self._tail(),
                )
            time.sleep(0.05)

    def _exited(self) -> EnvoyError:
        code = self.proc.wait(10) if self.proc is not None else None
        if self.collector is not None:
            self.collector.join()
        said = self.refusal()
        text = said or f"Envoy exited with status {code}"
        return EnvoyError(f"Envoy refused to start: {text}", stderr=self._tail())

    def refusal(self) -> str:
        """Envoy's own words for why it stopped: its last error lines."""
        if self.collector is None:
            return ""
        errors = self.collector.errors()
        wanted = [ln for ln in errors if ln.level is not None] or errors
        said: list[str] = []
        for line in wanted:
            # "wasm log <plugin> <root> <vm>: text" is the filter's own line.
            text = line.message.strip()
            if text.startswith("wasm log") and ": " in text:
                text = "the filter said: " + text.split(": ", 1)[1]
            if text and text not in said:
                said.append(text)
        return "\n".join(said[-8:])

    def _tail(self) -> str:
        return self.collector.tail() if self.collector is not None else ""

    def admin(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """``GET`` an admin endpoint: ``(status, body)``."""
        if not self.admin_url:
            raise EnvoyError("Envoy's admin endpoint is not known yet")
        try:
            with urllib.request.urlopen(self.admin_url + path, timeout=timeout) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def listener_ports(self) -> dict[str, int]:
        """Listener name -> the port Envoy bound (from ``/listeners``)."""
        _, body = self.admin("/listeners?format=json")
        data: Any = json.loads(body)
        ports: dict[str, int] = {}
        for item in data.get("listener_statuses", []):
            address = item.get("local_address", {}).get("socket_address", {})
            ports[str(item.get("name"))] = int(address.get("port_value", 0))
        return ports

    @property
    def lines(self) -> list[EnvoyLine]:
        """Every stderr line so far."""
        return self.collector.lines if self.collector is not None else []

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """Stop Envoy by its pid: SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(proc.pid, None)
            self.proc = None
            if self.collector is not None:
                self.collector.join()
            if proc.stderr is not None:
                with contextlib.suppress(OSError):
                    proc.stderr.close()

    def kill(self) -> None:
        """Stop Envoy at once (SIGKILL by pid)."""
        self.stop(grace=0.0)

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def __enter__(self) -> EnvoyProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

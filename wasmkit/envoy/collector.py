"""Envoy's stderr as records: the filter's ``wasm log`` lines, errors, markers.

Envoy runs with ``--log-format '@wk|%l|%n|%v' --log-format-escaped``, so each
line carries its level and logger and a message whose newlines are escaped.
A reader thread keeps every line in arrival order. Exchanges are sent one at
a time and each is followed by a *marker* request to a listener without the
filter, which Envoy logs as ``wasmkit-mark N`` on the same worker thread after
the exchange's stream is gone (``on_log``, ``on_done`` and ``on_delete``
included); the lines between two markers belong to one exchange.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from wasmkit.abi.constants import LogLevel

LOG_FORMAT = "@wk|%l|%n|%v"
"""The ``--log-format`` the collector parses."""

_LEVELS = {
    "trace": LogLevel.TRACE,
    "debug": LogLevel.DEBUG,
    "info": LogLevel.INFO,
    "warning": LogLevel.WARN,
    "warn": LogLevel.WARN,
    "error": LogLevel.ERROR,
    "critical": LogLevel.CRITICAL,
}

_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", '"': b'"', "'": b"'"}
# absl::CEscape, which --log-format-escaped applies: the escapes above, and
# every other byte outside printable ASCII as three octal digits.
_ESCAPE = re.compile(r"\\([0-7]{3}|.)")


def _unescape(text: str) -> str:
    # Back to the message's bytes, then decoded as the host decodes a
    # filter's log message (UTF-8, invalid sequences replaced).
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos : m.start()].encode("utf-8", "surrogateescape")
        code = m.group(1)
        if len(code) == 3:
            out.append(int(code, 8) & 0xFF)
        else:
            out += _ESCAPES.get(code, m.group(0).encode("utf-8", "surrogateescape"))
        pos = m.end()
    out += text[pos:].encode("utf-8", "surrogateescape")
    return out.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class EnvoyLine:
    """One line Envoy wrote to stderr."""

    seq: int
    """Position among all lines (0-based)."""
    level: LogLevel | None
    """Envoy's level, ``None`` for a line not in the log format (a crash)."""
    logger: str
    """Envoy's logger (component): ``wasm``, ``http``, ``lua``, ``main`` ..."""
    message: str
    """The message, newlines restored."""
    time_ns: int
    """When the collector read it (ns since the epoch)."""


def parse_line(seq: int, raw: str, time_ns: int = 0) -> EnvoyLine:
    """One stderr line as an :class:`EnvoyLine` (raw text if not in the format)."""
    raw = raw.rstrip("\r\n")
    if raw.startswith("@wk|"):
        parts = raw.split("|", 3)
        if len(parts) == 4:
            level = _LEVELS.get(parts[1].lower())
            return EnvoyLine(seq, level, parts[2], _unescape(parts[3]), time_ns)
    return EnvoyLine(seq, None, "", raw, time_ns)


class StderrCollector:
    """Reads Envoy's stderr in a thread and keeps its lines.

    Args:
        stream: Envoy's stderr (text mode).
        echo: called with each line as it arrives (debugging).
    """

    def __init__(
        self, stream: IO[str], echo: Callable[[EnvoyLine], None] | None = None
    ) -> None:
        self.lines: list[EnvoyLine] = []
        self._stream = stream
        self._echo = echo
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._read, name="wasmkit-envoy-stderr", daemon=True
        )
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._stream:
                line = parse_line(len(self.lines), raw, time.time_ns())
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
                if self._echo is not None:
                    self._echo(line)
        except (OSError, ValueError):
            pass  # the pipe closed under us: Envoy is gone
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Envoy closed its stderr (it exited)."""
        return self._closed

    def wait_for(
        self, match: Callable[[EnvoyLine], bool], timeout: float, start: int = 0
    ) -> EnvoyLine | None:
        """The first line from position ``start`` that ``match`` accepts.

        Waits up to ``timeout`` seconds; ``None`` if none came (or stderr
        closed first).
        """
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if self._closed or left <= 0:
                    return None
                self._cond.wait(left)

    def join(self, timeout: float = 5.0) -> None:
        """Wait for the reader to reach the end of the stream."""
        self._thread.join(timeout)

    def tail(self, n: int = 40) -> str:
        """The last ``n`` lines as text (for error messages)."""
        with self._cond:
            lines = self.lines[-n:]
        return "\n".join(_show(line) for line in lines)

    def errors(self, start: int = 0) -> list[EnvoyLine]:
        """Lines at error level or worse (and raw lines) from ``start``."""
        with self._cond:
            lines = self.lines[start:]
        return [ln for ln in lines if ln.level is None or ln.level >= LogLevel.ERROR]


def _show(line: EnvoyLine) -> str:
    if line.level is None:
        return line.message
    return f"[{line.level.label}][{line.logger}] {line.message}"

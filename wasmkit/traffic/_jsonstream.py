"""Stream the entries of a HAR file (JSON) one at a time, with the stdlib decoder.

``mitmproxy.io`` reads HAR by loading the whole document; this walks only the
structure around ``log.entries`` and hands each entry, decoded by
:class:`json.JSONDecoder`, to mitmproxy's ``har.request_to_flow``. No HAR
semantics live here. Stdlib only.
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from wasmkit.traffic.model import CaptureStats

_CHUNK = 1 << 16
_WS = re.compile(r"[ \t\n\r]*")
_NOT_UTF8 = re.compile("[\udc80-\udcff]")  # bytes kept by surrogateescape


class JsonError(Exception):
    """The text stopped being JSON (or ended) at character ``offset``."""

    def __init__(
        self, message: str, offset: int, *, truncated: bool, too_deep: bool = False
    ) -> None:
        super().__init__(message)
        self.offset = offset
        self.truncated = truncated
        self.too_deep = too_deep


class JsonStream:
    """Pulls JSON values out of a text stream one at a time.

    Only the structure around ``log.entries`` is walked here; every value is
    decoded by :class:`json.JSONDecoder`. The pending text grows geometrically
    while a value is incomplete, so a large entry costs linear time.
    """

    def __init__(self, fo: BinaryIO, limit: int) -> None:
        self._fo = fo
        # Bad bytes become lone surrogates and are reported where a value holds
        # them, so the entries before them are still read.
        self._decode = codecs.getincrementaldecoder("utf-8-sig")("surrogateescape")
        self._json = json.JSONDecoder()
        self.buf = ""
        self.pos = 0
        self.dropped = 0
        self.eof = False
        self.limit = limit
        self.entered = False

    @property
    def offset(self) -> int:
        """Characters consumed so far."""
        return self.dropped + self.pos

    def _fill(self, want: int = _CHUNK) -> bool:
        if self.eof:
            return False
        if self.pos:
            self.dropped += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        data = self._fo.read(max(want, _CHUNK))
        text = self._decode.decode(data, final=not data)
        if not data:
            self.eof = True
        self.buf += text
        return bool(data) or bool(text)

    def error(self, message: str) -> JsonError:
        """A syntax error at the current place."""
        return JsonError(message, self.offset, truncated=False)

    def truncated(self, message: str) -> JsonError:
        """The text ends too early, at the current place."""
        return JsonError(message, self.offset, truncated=True)

    def peek(self) -> str:
        """The next non-blank character, ``""`` at the end."""
        while True:
            match = _WS.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str) -> str:
        """Consume the next non-blank character, which must be one of ``chars``."""
        got = self.peek()
        if not got:
            raise self.truncated(f"the file ends where one of {chars!r} was expected")
        if got not in chars:
            raise self.error(f"expected one of {chars!r}, found {got!r}")
        self.pos += 1
        return got

    def value(self) -> Any:
        """Decode the next value (any JSON value, read whole)."""
        if not self.peek():
            raise self.truncated("the file ends where a value was expected")
        while True:
            try:
                obj, end = self._json.raw_decode(self.buf, self.pos)
            except RecursionError:
                # The decoder recurses once per level: a hostile file nested
                # thousands deep must end the read with an error, not a crash.
                raise JsonError(
                    f"more than about {sys.getrecursionlimit()} levels of nesting",
                    self.offset,
                    truncated=False,
                    too_deep=True,
                ) from None
            except json.JSONDecodeError as exc:
                at = exc.pos - self.pos  # _fill moves the text; keep the place
                if len(self.buf) - self.pos > self.limit:
                    raise self.error(
                        f"a value over the {self.limit}-byte limit"
                    ) from exc
                if not self._fill(len(self.buf) - self.pos):
                    at += self.pos
                    if _NOT_UTF8.match(self.buf, at):
                        raise JsonError(
                            "not UTF-8 text", self.dropped + at, truncated=False
                        ) from exc
                    if exc.msg.startswith("Unterminated") or at >= len(
                        self.buf.rstrip()
                    ):
                        raise self.truncated("the file ends inside a value") from exc
                    raise JsonError(
                        exc.msg, self.dropped + at, truncated=False
                    ) from exc
                continue
            # A number at the very end of the text may go on in the next chunk.
            if end == len(self.buf) and not self.eof and self._fill():
                continue
            bad = _NOT_UTF8.search(self.buf, self.pos, end)
            if bad:
                self.pos = bad.start()
                raise self.error("not UTF-8 text")
            self.pos = end
            return obj

    def members(self) -> Iterator[str]:
        """Keys of the object whose ``{`` is next; the caller reads each value."""
        self.expect("{")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            key = self.value()
            if not isinstance(key, str):
                raise self.error("an object key must be a string")
            self.expect(":")
            yield key
            if self.expect(",}") == "}":
                return

    def items(self) -> Iterator[Any]:
        """Elements of the array whose ``[`` is next, decoded one at a time."""
        self.expect("[")
        self.entered = True
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.expect(",]") == "]":
                return


def har_entries(stream: JsonStream, stats: CaptureStats) -> Iterator[Any]:
    """The decoded ``log.entries`` items; ``log.version`` goes to ``stats``.

    Raises:
        JsonError: the text is not JSON, or ends early.
        NotHar: the document has no ``log.entries``.
    """
    found = False
    for key in stream.members():
        if key != "log":
            stream.value()
            continue
        if stream.peek() != "{":
            raise stream.error("log is not an object")
        for log_key in stream.members():
            if log_key == "entries":
                found = True
                yield from stream.items()
            elif log_key == "version":
                version = stream.value()
                if isinstance(version, str) and stats.format_version is None:
                    stats.format_version = version
            else:
                stream.value()
    if stream.peek():
        raise stream.error("text after the end of the HAR document")
    if not found:
        raise NotHar()


class NotHar(Exception):
    """The JSON document has no ``log.entries``."""

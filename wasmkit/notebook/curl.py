"""A request as a ``curl`` command line (the explorer's "copy as curl")."""

from __future__ import annotations

import shlex

from wasmkit.host.message import HttpMessage

_SKIPPED = {b"content-length", b"transfer-encoding", b"connection"}
"""Fields curl writes itself from the command line and body."""


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _printf_octal(data: bytes) -> str:
    # printf '%b' understands \0NNN in bash, dash and zsh alike.
    return "".join(f"\\0{b:03o}" for b in data)


def command(message: HttpMessage) -> str:
    """``message`` (a request: pseudo-headers, fields, body) as one curl command.

    Every word is shell-quoted (:func:`shlex.quote`). Pseudo-headers become the
    method and URL; ``host`` is kept only when it differs from the URL's
    authority; ``content-length`` and framing fields are left to curl. A UTF-8
    body goes in ``--data-binary``; any other body is piped in through
    ``printf '%b'`` with octal escapes, byte for byte.
    """
    scheme = _text(message.get(b":scheme") or b"http")
    authority = _text(message.get(b":authority") or b"")
    path = _text(message.get(b":path") or b"/")
    method = _text(message.get(b":method") or b"GET")
    words = ["curl"]
    body = message.body or b""
    if method != ("POST" if body else "GET"):
        words += ["-X", method]
    words.append(f"{scheme}://{authority}{path}")
    for name, value in message.headers:
        if name.startswith(b":") or name.lower() in _SKIPPED:
            continue
        if name.lower() == b"host" and _text(value) == authority:
            continue
        words += ["-H", f"{_text(name)}: {_text(value)}"]
    prefix = ""
    if body:
        try:
            words += ["--data-binary", body.decode("utf-8")]
        except UnicodeDecodeError:
            prefix = f"printf '%b' {shlex.quote(_printf_octal(body))} | "
            words += ["--data-binary", "@-"]
    return prefix + " ".join(shlex.quote(w) for w in words)

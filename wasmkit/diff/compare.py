"""What a filter changed: header and body differences, in pure Python."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Change = Literal["added", "removed", "changed", "unchanged"]


@dataclass(frozen=True, slots=True)
class HeaderChange:
    """One header field, before and after the filter."""

    name: str
    """Lower-case header name."""
    before: str | None
    """Value before, ``None`` if the filter added it."""
    after: str | None
    """Value after, ``None`` if the filter removed it."""
    change: Change
    """``added``, ``removed``, ``changed`` or ``unchanged``."""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def header_changes(
    before: Sequence[tuple[bytes, bytes]] | None,
    after: Sequence[tuple[bytes, bytes]] | None,
) -> list[HeaderChange]:
    """Compare two header lists, names case-insensitive, repeats by position.

    The n-th value of a name before is matched with its n-th value after; a
    value without a partner is added or removed.
    """

    def group(items: Sequence[tuple[bytes, bytes]] | None) -> dict[bytes, list[bytes]]:
        out: dict[bytes, list[bytes]] = {}
        for key, value in items or ():
            out.setdefault(key.lower(), []).append(value)
        return out

    old, new = group(before), group(after)
    rows: list[HeaderChange] = []
    for name in list(old) + [n for n in new if n not in old]:
        olds, news = old.get(name, []), new.get(name, [])
        for i in range(max(len(olds), len(news))):
            b = olds[i] if i < len(olds) else None
            a = news[i] if i < len(news) else None
            if b is None:
                change: Change = "added"
            elif a is None:
                change = "removed"
            else:
                change = "unchanged" if a == b else "changed"
            rows.append(
                HeaderChange(
                    _text(name),
                    None if b is None else _text(b),
                    None if a is None else _text(a),
                    change,
                )
            )
    return rows


@dataclass(frozen=True, slots=True)
class BodyChange:
    """A body before and after the filter."""

    kind: Literal["same", "text", "json", "binary"]
    """How the bodies were compared."""
    changed: bool
    """Whether the bytes differ."""
    size_before: int
    """Bytes before."""
    size_after: int
    """Bytes after."""
    diff: str
    """Unified diff (text), changed JSON paths (json), or sizes and sha256."""


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


_NOT_JSON = object()


def _json_paths(a: Any, b: Any, path: str = "$") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}"
            if key not in b:
                out.append(f"- {sub}: {json.dumps(a[key])}")
            elif key not in a:
                out.append(f"+ {sub}: {json.dumps(b[key])}")
            else:
                out.extend(_json_paths(a[key], b[key], sub))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            p
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for p in _json_paths(x, y, f"{path}[{i}]")
        ]
    if a != b or type(a) is not type(b):
        return [f"~ {path}: {json.dumps(a)} -> {json.dumps(b)}"]
    return []


def body_change(before: bytes | None, after: bytes | None) -> BodyChange:
    """Compare bodies: JSON structurally, text as a unified diff, else digests."""
    old, new = before or b"", after or b""
    if old == new:
        return BodyChange("same", False, len(old), len(new), "")
    a, b = _json(old), _json(new)
    if a is not _NOT_JSON and b is not _NOT_JSON:
        return BodyChange(
            "json", True, len(old), len(new), "\n".join(_json_paths(a, b))
        )
    try:
        text_a, text_b = old.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        digest = (
            f"{len(old)} bytes sha256 {hashlib.sha256(old).hexdigest()[:16]} -> "
            f"{len(new)} bytes sha256 {hashlib.sha256(new).hexdigest()[:16]}"
        )
        return BodyChange("binary", True, len(old), len(new), digest)
    lines = difflib.unified_diff(
        text_a.splitlines(), text_b.splitlines(), "before", "after", lineterm=""
    )
    return BodyChange("text", True, len(old), len(new), "\n".join(lines))

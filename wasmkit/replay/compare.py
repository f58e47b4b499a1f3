"""Two builds or two configurations over the same capture, flow by flow.

:func:`compare` pairs the flows of two replays by their capture index and
says, for each, where the two after-filter outputs differ: the request the
filter passed upstream (headers, body), the response the client got (status,
headers, body), the local reply and the failure.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from wasmkit.diff.compare import BodyChange, HeaderChange, body_change, header_changes
from wasmkit.host.message import HeaderPairs, HttpMessage, LocalReply
from wasmkit.replay.results import FlowResult, ReplayResult, _action

if TYPE_CHECKING:
    from wasmkit.envoy.differ import EnvoyComparison

PathArg = str | os.PathLike[str]

COLUMNS = [
    "index", "method", "path", "status_a", "status_b", "action_a", "action_b",
    "request_headers", "response_headers", "request_body", "response_body",
    "local_reply", "error", "fields", "differs",
]  # fmt: skip
"""The keys of :attr:`Comparison.rows`, in order."""

FIELDS = (
    "missing", "status", "action", "request headers", "response headers",
    "request body", "response body", "local reply", "error",
)  # fmt: skip
"""What :attr:`FlowComparison.fields` can name, in this order."""


def _headers(message: HttpMessage | None) -> HeaderPairs | None:
    return message.headers if message is not None else None


def _body(message: HttpMessage | None) -> bytes | None:
    return message.body if message is not None else None


def _reply(reply: LocalReply | None) -> str:
    if reply is None:
        return "none"
    text = str(reply.status)
    if reply.details:
        text += f" ({reply.details})"
    return text


def _error(flow: FlowResult | None) -> str:
    if flow is None or flow.result.error is None:
        return "none"
    error = flow.result.error
    return f"{error.kind}: {error.callback}"


def _header_text(changes: Sequence[HeaderChange]) -> str:
    marks = {"added": "+", "removed": "-", "changed": "~"}
    parts = []
    for c in changes:
        if c.change == "changed":
            parts.append(f"~ {c.name}: {c.before} -> {c.after}")
        elif c.change != "unchanged":
            value = c.after if c.change == "added" else c.before
            parts.append(f"{marks[c.change]} {c.name}: {value}")
    return "; ".join(parts)


def _body_text(change: BodyChange | None) -> str:
    if change is None or not change.changed:
        return ""
    return f"{change.size_before} -> {change.size_after} bytes ({change.kind})"


@dataclass(frozen=True, slots=True)
class FlowComparison:
    """One flow of the capture under both replays (``a`` and ``b``)."""

    index: int
    """Position of the flow in the capture."""
    a: FlowResult | None
    """The flow under replay a, ``None`` when a did not replay it."""
    b: FlowResult | None
    """The flow under replay b, ``None`` when b did not replay it."""
    request_headers: list[HeaderChange]
    """Upstream request headers, a → b (changed fields only)."""
    response_headers: list[HeaderChange]
    """Client response headers, a → b (changed fields only)."""
    request_body: BodyChange | None
    """Upstream request body, a → b (``None`` when neither passed one on)."""
    response_body: BodyChange | None
    """Client response body, a → b (``None`` when neither had one)."""

    @property
    def method(self) -> str:
        """The request method."""
        flow = self.a or self.b
        assert flow is not None
        return (flow.result.request_before.get(b":method") or b"").decode()

    @property
    def path(self) -> str:
        """The request path."""
        flow = self.a or self.b
        assert flow is not None
        raw = flow.result.request_before.get(b":path") or b""
        return raw.decode("utf-8", "replace")

    @property
    def status_a(self) -> int | None:
        """The status the client got under a."""
        return _status(self.a)

    @property
    def status_b(self) -> int | None:
        """The status the client got under b."""
        return _status(self.b)

    @property
    def action_a(self) -> str:
        """What a did: forwarded, local reply, failed, ... (``missing``)."""
        return _action(self.a) if self.a is not None else "missing"

    @property
    def action_b(self) -> str:
        """What b did."""
        return _action(self.b) if self.b is not None else "missing"

    @property
    def local_reply(self) -> str:
        """``"403 (denied) -> none"`` when the local replies differ, else ``""``."""
        ra = self.a.result.local_reply if self.a else None
        rb = self.b.result.local_reply if self.b else None
        same = (ra is None and rb is None) or (
            ra is not None
            and rb is not None
            and (ra.status, ra.headers, ra.body, ra.details, ra.grpc_status)
            == (rb.status, rb.headers, rb.body, rb.details, rb.grpc_status)
        )
        return "" if same else f"{_reply(ra)} -> {_reply(rb)}"

    @property
    def error(self) -> str:
        """``"trap: proxy_on_request_headers -> none"`` when failures differ."""
        ea, eb = _error(self.a), _error(self.b)
        return "" if ea == eb else f"{ea} -> {eb}"

    @property
    def fields(self) -> list[str]:
        """Where the two outputs differ: names from :data:`FIELDS`, in order.

        ``missing`` when one side did not replay the flow; ``[]`` when the
        outputs are the same.
        """
        req, resp = self.request_body, self.response_body
        differ = {
            "missing": self.a is None or self.b is None,
            "status": self.status_a != self.status_b,
            "action": self.action_a != self.action_b,
            "request headers": bool(self.request_headers),
            "response headers": bool(self.response_headers),
            "request body": req is not None and req.changed,
            "response body": resp is not None and resp.changed,
            "local reply": bool(self.local_reply),
            "error": bool(self.error),
        }
        return [name for name in FIELDS if differ[name]]

    @property
    def differs(self) -> bool:
        """The two outputs differ somewhere (see :attr:`fields`)."""
        return bool(self.fields)

    def row(self) -> dict[str, Any]:
        """One summary dict (keys: :data:`COLUMNS`)."""
        return {
            "index": self.index,
            "method": self.method,
            "path": self.path,
            "status_a": self.status_a,
            "status_b": self.status_b,
            "action_a": self.action_a,
            "action_b": self.action_b,
            "request_headers": _header_text(self.request_headers),
            "response_headers": _header_text(self.response_headers),
            "request_body": _body_text(self.request_body),
            "response_body": _body_text(self.response_body),
            "local_reply": self.local_reply,
            "error": self.error,
            "fields": ", ".join(self.fields),
            "differs": self.differs,
        }


def _status(flow: FlowResult | None) -> int | None:
    if flow is None or flow.result.response_after is None:
        return None
    return flow.result.response_after.status


def _pair(index: int, a: FlowResult | None, b: FlowResult | None) -> FlowComparison:
    ra = a.result if a else None
    rb = b.result if b else None
    req_a = ra.request_after if ra else None
    req_b = rb.request_after if rb else None
    resp_a = ra.response_after if ra else None
    resp_b = rb.response_after if rb else None

    def headers(x: HttpMessage | None, y: HttpMessage | None) -> list[HeaderChange]:
        if x is None and y is None:
            return []
        return [
            c
            for c in header_changes(_headers(x), _headers(y))
            if c.change != "unchanged"
        ]

    def body(x: HttpMessage | None, y: HttpMessage | None) -> BodyChange | None:
        if x is None and y is None:
            return None
        return body_change(_body(x), _body(y))

    return FlowComparison(
        index=index,
        a=a,
        b=b,
        request_headers=headers(req_a, req_b),
        response_headers=headers(resp_a, resp_b),
        request_body=body(req_a, req_b),
        response_body=body(resp_a, resp_b),
    )


@dataclass(slots=True)
class Comparison:
    """Two replays of one capture, flow by flow."""

    a: ReplayResult
    """Replay a."""
    b: ReplayResult
    """Replay b."""
    flows: list[FlowComparison]
    """One entry per flow index either replay has, in index order."""
    names: tuple[str, str] = ("a", "b")
    """How views label the two sides: the user's names (``names=``, a
    ``%%wasm`` filter's name, a path's file name), else ``a`` and ``b``."""

    def __iter__(self) -> Iterator[FlowComparison]:
        return iter(self.flows)

    def __len__(self) -> int:
        return len(self.flows)

    @property
    def differing(self) -> list[FlowComparison]:
        """The flows whose outputs differ."""
        return [f for f in self.flows if f.differs]

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per flow (keys: :data:`COLUMNS`)."""
        return [f.row() for f in self.flows]

    def frame(self, *, differing: bool = False) -> Any:
        """The rows as a pandas DataFrame (only differing flows if asked)."""
        from wasmkit.diff import compare_frames  # pandas loads only when asked for

        return compare_frames.comparison(self, differing=differing)

    def __repr__(self) -> str:
        a, b = self.names
        return (
            f"<Comparison {a!r} vs {b!r}: "
            f"{len(self.flows)} flows, {len(self.differing)} differ>"
        )

    def text(self, *, max_rows: int = 200) -> str:
        """The differing flows as a plain-text table, then one line of counts."""
        a, b = self.names
        side = min(max(len(a), len(b), 16), 32)
        columns = [
            ("#", 4), ("method", 7), ("path", 28), (a, side), (b, side),
            ("differs in", 0),
        ]  # fmt: skip
        lines = ["  ".join(f"{t[:w] if w else t:<{w}}" for t, w in columns).rstrip()]
        differing = self.differing
        for flow in differing[:max_rows]:
            row = flow.row()
            cells = [
                str(flow.index),
                row["method"],
                row["path"],
                f"{_shown(row['status_a'])} {row['action_a']}",
                f"{_shown(row['status_b'])} {row['action_b']}",
                row["fields"],
            ]
            lines.append(
                "  ".join(
                    f"{_cut(c, w):<{w}}" if w else c
                    for c, (_, w) in zip(cells, columns, strict=True)
                ).rstrip()
            )
        if len(differing) > max_rows:
            lines.append(f"... {len(differing) - max_rows} more flows")
        lines.append(
            f"{len(self.flows)} flows compared, {len(differing)} differ: "
            f"{a} = {_first_line(self.a.filter)}, {b} = {_first_line(self.b.filter)}"
        )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON: names, counts and the differing flows' rows."""
        return {
            "a": self.names[0],
            "b": self.names[1],
            "filters": [self.a.filter, self.b.filter],
            "flows": len(self.flows),
            "differing": len(self.differing),
            "rows": [f.row() for f in self.differing],
        }

    def _repr_html_(self) -> str:
        # The static summary (saved notebooks, exports): the differing flows.
        def cell(value: Any) -> str:
            return html.escape("" if value is None else str(value))

        rows = [f.row() for f in self.differing]
        columns = [c for c in COLUMNS if c != "differs"]
        head = "".join(f"<th>{cell(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in columns) + "</tr>"
            for r in rows[:_HTML_ROWS]
        )
        more = len(rows) - _HTML_ROWS
        name_a, name_b = self.names
        return (
            '<div class="wasmkit-compare-summary tex2jax_ignore mathjax_ignore">'
            "<p><b>compare</b> "
            f"<b>{cell(name_a)}</b> ({cell(_first_line(self.a.filter))}) vs "
            f"<b>{cell(name_b)}</b> ({cell(_first_line(self.b.filter))}): "
            f"{len(self.flows)} flows, {len(rows)} differing</p>"
            + (f"<table><tr>{head}</tr>{body}</table>" if rows else "")
            + (f"<p>… and {more} more</p>" if more > 0 else "")
            + "</div>"
        )

    def show(self) -> Any:
        """The compare view widget: differing flows, A and B side by side.

        The last expression of a cell shows it; elsewhere pass it to
        ``display()``. Needs ipywidgets (a notebook dependency).
        """
        # The one place the core reaches into the notebook layer, lazily.
        from wasmkit.notebook import compare_view

        return compare_view.CompareView(self)


_HTML_ROWS = 200


def _shown(status: int | None) -> str:
    return "-" if status is None else str(status)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(name: str) -> str:
    first = name.strip().splitlines()[0] if name.strip() else name
    return first if len(first) <= 80 and first == name.strip() else first[:60] + " …"


def compare_results(
    a: ReplayResult, b: ReplayResult, names: tuple[str, str] = ("a", "b")
) -> Comparison:
    """Pair two replays of the same capture by flow index."""
    by_a = {f.index: f for f in a.flows}
    by_b = {f.index: f for f in b.flows}
    indices = sorted(set(by_a) | set(by_b))
    flows = [_pair(i, by_a.get(i), by_b.get(i)) for i in indices]
    return Comparison(a, b, flows, _distinct(names))


def _distinct(names: tuple[str, str]) -> tuple[str, str]:
    # Two sides named alike (one filter, two configurations) stay apart.
    a, b = names
    if a != b:
        return a, b
    return (f"{a} (a)", f"{b} (b)") if (a, b) != ("a", "b") else ("a", "b")


def _side_name(side: Any, default: str) -> str:
    # A %%wasm filter by its name; a path as the user gave it, by its file
    # name; anything else (a build artifact in the cache, bytes, WAT text,
    # a replay result) as a or b.
    name = getattr(side, "name", None)
    if _is_filter(side) and isinstance(name, str) and name:
        return name
    if isinstance(side, str) and not side.lstrip().startswith("("):
        return os.path.basename(side.rstrip("/")) or side
    if type(side).__name__ in ("PosixPath", "WindowsPath", "Path"):
        return os.path.basename(os.fspath(side)) or default
    return default


def _is_filter(side: Any) -> bool:
    # What %%wasm binds (wasmkit.notebook.display.Filter), told by its shape:
    # the core does not import the notebook layer.
    return callable(getattr(side, "replay", None)) and hasattr(side, "artifact")


_UNSET: Any = object()


def compare(
    a: Any,
    b: Any,
    captures: PathArg | Sequence[PathArg] | None = None,
    *,
    config_a: bytes | str = _UNSET,
    config_b: bytes | str = _UNSET,
    names: tuple[str, str] | None = None,
    **options: Any,
) -> Comparison | EnvoyComparison:
    """Compare two builds, or two configurations, over the same capture.

    Either pass two :class:`~wasmkit.replay.results.ReplayResult` of the same
    capture, or two filters and the capture to replay through each::

        compare(old, new, "api.flow")                       # two builds
        compare(f, f, "api.flow", config_a="{}", config_b='{"strict": true}')

    A wasmkit replay and an Envoy replay (:func:`wasmkit.envoy.replay`), in
    either order, give the comparison with Envoy instead: a
    :class:`wasmkit.envoy.differ.EnvoyComparison` (normalizations counted,
    ``identical``, ``unexplained``).

    A filter is anything :func:`wasmkit.replay.run.replay` takes (a path,
    a build artifact, wasm bytes, WAT text) or the filter a ``%%wasm`` cell
    binds, which replays with its own configuration, root id and VM options
    (``config_a`` / ``config_b`` and ``options`` override them).

    Args:
        a: a replay result, or a filter.
        b: the same for the other side.
        captures: the capture(s) to replay, when ``a`` and ``b`` are filters.
        config_a: a's plugin configuration (default: ``config``, else empty).
        config_b: b's plugin configuration (default: ``config``, else empty).
        names: how views label the sides (default: a ``%%wasm`` filter's
            name, a path's file name, else ``a`` and ``b``).
        **options: for :func:`~wasmkit.replay.run.replay` on both sides
            (``config``, ``limit``, ``workers``, ``responder``...).

    Returns:
        A :class:`Comparison`: ``.differing``, ``.rows``, ``.frame()`` (an
        ``EnvoyComparison`` for a wasmkit and an Envoy replay).

    Raises:
        ValueError: results given with a capture or options, or filters without.
    """
    results = isinstance(a, ReplayResult), isinstance(b, ReplayResult)
    if all(results):
        if (
            captures is not None
            or options
            or config_a is not _UNSET
            or (config_b is not _UNSET)
        ):
            raise ValueError("compare: replay results take no capture or options")
        if a.runtime != b.runtime and "envoy" in (a.runtime, b.runtime):
            from wasmkit.envoy import differ  # Envoy's layer loads only when asked

            ours, theirs = (a, b) if b.runtime == "envoy" else (b, a)
            return differ.compare_envoy(ours, theirs)
        return compare_results(a, b, names or ("a", "b"))
    if any(results):
        raise ValueError("compare: pass two replay results or two filters")
    if captures is None:
        raise ValueError("compare: filters need a capture to replay")
    config = options.pop("config", _UNSET)
    labels = names or (_side_name(a, "a"), _side_name(b, "b"))
    result_a = _replay_side(a, captures, config_a, config, options)
    result_b = _replay_side(b, captures, config_b, config, options)
    return compare_results(result_a, result_b, labels)


def _replay_side(
    side: Any,
    captures: PathArg | Sequence[PathArg],
    config: Any,
    shared: Any,
    options: dict[str, Any],
) -> ReplayResult:
    from wasmkit.replay.run import replay

    wanted = dict(options)
    chosen = config if config is not _UNSET else shared
    if _is_filter(side):
        # The %%wasm filter's configuration unless one is given.
        if chosen is not _UNSET:
            wanted["config"] = chosen
        return cast(ReplayResult, side.replay(captures, **wanted))
    wanted["config"] = b"" if chosen is _UNSET else chosen
    return replay(side, captures, **wanted)

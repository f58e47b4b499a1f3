"""wasmkit against a real Envoy: the same filter and capture, exchange by exchange.

:func:`compare_envoy` pairs a wasmkit replay with an Envoy replay
(:func:`wasmkit.envoy.replay`) of the same filter and capture by capture
index and lists, for each exchange, every field where they differ:

* the request the upstream received: ``:method``, ``:path``, ``:authority``,
  ``:scheme``, the other header fields in order (repeats kept), the body,
  the trailers;
* the response the client received: ``:status``, the header fields in
  order, the body, the trailers;
* the filter's logs (level and message, in order);
* the local reply (status and details), the failure, the action, and the
  HTTP callouts the flow made (cluster, method, path, outcome).

Both sides are read from ``upstream_request`` / ``client_response`` when the
result has them, else from what the filter passed on (``request_after`` when
the request went upstream, ``response_after``). Before comparing, the
normalizations of :mod:`wasmkit.envoy.normalize` run and are counted; every
difference left is *unexplained*.
"""

from __future__ import annotations

import difflib
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from wasmkit.envoy import normalize
from wasmkit.envoy.normalize import CLIENT, UPSTREAM, Context, Pair
from wasmkit.host.message import HttpMessage
from wasmkit.replay.results import FlowResult, ReplayResult, _action

COLUMNS = [
    "index", "method", "path", "status_wasmkit", "status_envoy",
    "action_wasmkit", "action_envoy", "differences", "fields", "normalized",
    "agrees",
]  # fmt: skip
"""The keys of :attr:`EnvoyComparison.rows`, in order."""

_ABSENT = "(absent)"
_PREVIEW = 60


@dataclass(frozen=True, slots=True)
class Difference:
    """One field of one exchange where wasmkit and Envoy differ."""

    index: int
    """The exchange's position in the capture."""
    field: str
    """What differs: ``client_response.headers[server]``, ``logs[2]``..."""
    wasmkit: str
    """wasmkit's value, as text."""
    envoy: str
    """Envoy's value, as text."""

    def line(self) -> str:
        """``flow 3: client_response.status: wasmkit 200 | envoy 503``."""
        return (
            f"flow {self.index}: {self.field}: "
            f"wasmkit {self.wasmkit} | envoy {self.envoy}"
        )


@dataclass(slots=True)
class ExchangeComparison:
    """One exchange of the capture under wasmkit and under Envoy."""

    index: int
    """The exchange's position in the capture."""
    wasmkit: FlowResult | None
    """wasmkit's flow, ``None`` when wasmkit did not replay it."""
    envoy: FlowResult | None
    """Envoy's flow, ``None`` when Envoy did not replay it."""
    differences: list[Difference] = field(default_factory=list)
    """Every unexplained difference, in field order."""
    normalized: list[str] = field(default_factory=list)
    """The normalizations that applied (a name per time)."""

    @property
    def agrees(self) -> bool:
        """No unexplained difference."""
        return not self.differences

    @property
    def method(self) -> str:
        """The captured request's method."""
        flow = self.wasmkit or self.envoy
        assert flow is not None
        return (flow.result.request_before.get(b":method") or b"").decode()

    @property
    def path(self) -> str:
        """The captured request's path."""
        flow = self.wasmkit or self.envoy
        assert flow is not None
        raw = flow.result.request_before.get(b":path") or b""
        return raw.decode("utf-8", "replace")

    def row(self) -> dict[str, Any]:
        """One summary dict (keys: :data:`COLUMNS`)."""
        fields = dict.fromkeys(d.field for d in self.differences)
        return {
            "index": self.index,
            "method": self.method,
            "path": self.path,
            "status_wasmkit": _status(self.wasmkit),
            "status_envoy": _status(self.envoy),
            "action_wasmkit": _action(self.wasmkit) if self.wasmkit else "missing",
            "action_envoy": _action(self.envoy) if self.envoy else "missing",
            "differences": len(self.differences),
            "fields": "; ".join(fields),
            "normalized": ", ".join(self.normalized),
            "agrees": self.agrees,
        }


# -- reading one side ------------------------------------------------------------


def upstream_request(flow: FlowResult) -> HttpMessage | None:
    """The request the upstream received (``None``: it received none)."""
    r = flow.result
    if r.upstream_request is not None or r.client_request is not None:
        # With the connection manager's view (client_request set), None is
        # what reached the upstream: nothing (a refused connection).
        return r.upstream_request
    return r.request_after if r.request_forwarded else None


def client_response(flow: FlowResult) -> HttpMessage | None:
    """The response the client received (``None``: none)."""
    r = flow.result
    return r.client_response if r.client_response is not None else r.response_after


def _status(flow: FlowResult | None) -> int | None:
    message = client_response(flow) if flow is not None else None
    return message.status if message is not None else None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _values(values: list[bytes]) -> str:
    if not values:
        return _ABSENT
    return ", ".join(repr(_text(v)) for v in values)


def _body_text(body: bytes) -> str:
    preview = _text(body[:_PREVIEW])
    more = "…" if len(body) > _PREVIEW else ""
    return f"{len(body)} bytes {preview!r}{more}"


def _logs(flow: FlowResult) -> list[str]:
    return [line for _, line in _log_lines(flow)]


def _log_lines(flow: FlowResult) -> list[tuple[str, str]]:
    return [
        (log.callback, f"{log.level.label}: {log.message}")
        for log in flow.result.logs
        if log.source != "host"
    ]


def _large_bodies(w: FlowResult, e: FlowResult) -> list[str]:
    """The body callbacks whose body was over ``SMALL_BODY`` on either side."""
    out = []
    requests = (w.result.request_before, e.result.request_before)
    responses = (w.result.response_before, e.result.response_before)
    for callback, messages in (
        ("proxy_on_request_body", requests),
        ("proxy_on_response_body", responses),
    ):
        sizes = [len(m.body) for m in messages if m is not None]
        if sizes and max(sizes) > normalize.SMALL_BODY:
            out.append(callback)
    return out


def _reply(flow: FlowResult) -> str:
    reply = flow.result.local_reply
    if reply is None:
        return "none"
    return f"{reply.status} ({reply.details})" if reply.details else str(reply.status)


def _failure(flow: FlowResult) -> tuple[bool, str]:
    error = flow.result.error
    if error is None:
        return False, ""
    return True, error.callback


def _callouts(flow: FlowResult) -> list[str]:
    out = []
    for call in flow.result.callouts:
        path = _text(dict(call.headers).get(b":path", b""))
        out.append(f"{call.method} {call.cluster} {path} -> {call.outcome}")
    return out


# -- comparing -------------------------------------------------------------------

_PSEUDO = {
    UPSTREAM: (b":method", b":path", b":authority", b":scheme"),
    CLIENT: (b":status",),
}


def _context(flow: FlowResult, message: str, status: int | None) -> Context:
    # The request as captured (before the connection manager changed it).
    req = flow.result.client_request or flow.result.request_before
    return Context(
        method=(req.get(b":method") or b"").decode().upper(),
        status=status if message == CLIENT else None,
        captured_request_id=req.get(b"x-request-id"),
        captured_scheme=(req.get(b":scheme") or b"http").decode(),
    )


def _message_differences(
    index: int,
    name: str,
    w: HttpMessage | None,
    e: HttpMessage | None,
    ctx: Context,
) -> tuple[list[Difference], list[str]]:
    if w is None and e is None:
        return [], []
    if w is None or e is None:
        said = {UPSTREAM: "sent", CLIENT: "received"}[name]
        return [
            Difference(
                index,
                name,
                f"none {said}" if w is None else said,
                f"none {said}" if e is None else said,
            )
        ], []
    pair = Pair(name, list(w.headers), list(e.headers), w.body, e.body)
    applied = normalize.apply(pair, ctx)
    out: list[Difference] = []
    pseudo = _PSEUDO[name]
    for key in pseudo:
        wv = [v for k, v in pair.wasmkit if k == key]
        ev = [v for k, v in pair.envoy if k == key]
        if wv != ev:
            out.append(
                Difference(index, f"{name}.{_text(key[1:])}", _values(wv), _values(ev))
            )
    w_fields = [f for f in pair.wasmkit if not f[0].startswith(b":")]
    e_fields = [f for f in pair.envoy if not f[0].startswith(b":")]
    out.extend(_header_differences(index, f"{name}.headers", w_fields, e_fields))
    if w.body != e.body:
        out.append(
            Difference(index, f"{name}.body", _body_text(w.body), _body_text(e.body))
        )
    if (w.trailers or []) != (e.trailers or []):
        out.append(
            Difference(
                index,
                f"{name}.trailers",
                _values([k + b": " + v for k, v in w.trailers or []]),
                _values([k + b": " + v for k, v in e.trailers or []]),
            )
        )
    return out, applied


def _header_differences(
    index: int, name: str, w: list[tuple[bytes, bytes]], e: list[tuple[bytes, bytes]]
) -> list[Difference]:
    if w == e:
        return []
    names = list(dict.fromkeys([k for k, _ in w] + [k for k, _ in e]))
    out = []
    for key in names:
        wv = [v for k, v in w if k == key]
        ev = [v for k, v in e if k == key]
        if wv != ev:
            out.append(
                Difference(index, f"{name}[{_text(key)}]", _values(wv), _values(ev))
            )
    if not out:
        out.append(
            Difference(
                index,
                f"{name} order",
                ", ".join(_text(k) for k, _ in w),
                ", ".join(_text(k) for k, _ in e),
            )
        )
    return out


def _list_differences(
    index: int, name: str, w: list[str], e: list[str]
) -> list[Difference]:
    out = []
    matcher = difflib.SequenceMatcher(a=w, b=e, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        where = f"{i1}" if i2 - i1 <= 1 else f"{i1}:{i2}"
        out.append(
            Difference(
                index,
                f"{name}[{where}]",
                " | ".join(w[i1:i2]) or _ABSENT,
                " | ".join(e[j1:j2]) or _ABSENT,
            )
        )
    return out


def compare_flows(
    index: int, w: FlowResult | None, e: FlowResult | None
) -> ExchangeComparison:
    """Compare one exchange (see the module docstring for the fields)."""
    result = ExchangeComparison(index, w, e)
    if w is None or e is None:
        result.differences.append(
            Difference(
                index,
                "flow",
                "not replayed" if w is None else "replayed",
                "not replayed" if e is None else "replayed",
            )
        )
        return result
    diffs = result.differences
    w_up, e_up = upstream_request(w), upstream_request(e)
    found, applied = _message_differences(
        index, UPSTREAM, w_up, e_up, _context(w, UPSTREAM, None)
    )
    diffs.extend(found)
    result.normalized.extend(applied)
    w_resp, e_resp = client_response(w), client_response(e)
    either = w_resp or e_resp
    status = either.status if either is not None else None
    found, applied = _message_differences(
        index, CLIENT, w_resp, e_resp, _context(w, CLIENT, status)
    )
    diffs.extend(found)
    result.normalized.extend(applied)
    w_logs, e_logs, reads = normalize.body_reads(
        _log_lines(w), _logs(e), _large_bodies(w, e)
    )
    if reads:
        result.normalized.append("body-reads")
    diffs.extend(_list_differences(index, "logs", w_logs, e_logs))
    reply_w, reply_e = _reply(w), _reply(e)
    if reply_w != reply_e:
        diffs.append(Difference(index, "local_reply", reply_w, reply_e))
    (failed_w, cb_w), (failed_e, cb_e) = _failure(w), _failure(e)
    if failed_w != failed_e or (cb_w and cb_e and cb_w != cb_e):
        diffs.append(
            Difference(
                index,
                "failure",
                f"failed in {cb_w or '?'}" if failed_w else "none",
                f"failed in {cb_e or '?'}" if failed_e else "none",
            )
        )
    action_w, action_e = _action(w), _action(e)
    if action_w != action_e and reply_w == reply_e and failed_w == failed_e:
        diffs.append(Difference(index, "action", action_w, action_e))
    diffs.extend(_list_differences(index, "callouts", _callouts(w), _callouts(e)))
    return result


# -- the result ------------------------------------------------------------------


@dataclass(slots=True)
class EnvoyComparison:
    """A wasmkit replay and an Envoy replay of one capture, exchange by exchange."""

    wasmkit: ReplayResult
    """The in-process replay."""
    envoy: ReplayResult
    """The replay through Envoy."""
    flows: list[ExchangeComparison]
    """One entry per exchange either side replayed, in capture order."""
    notes: list[str] = field(default_factory=list)
    """What the Envoy replay could not reproduce of wasmkit's (chunk size...)."""

    def __iter__(self) -> Iterator[ExchangeComparison]:
        return iter(self.flows)

    def __len__(self) -> int:
        return len(self.flows)

    @property
    def unexplained(self) -> list[Difference]:
        """Every difference no normalization explains, in capture order."""
        return [d for f in self.flows for d in f.differences]

    @property
    def identical(self) -> bool:
        """Whether both agree on every exchange (after the normalizations)."""
        return not self.unexplained

    @property
    def differing(self) -> list[ExchangeComparison]:
        """The exchanges with unexplained differences."""
        return [f for f in self.flows if f.differences]

    @property
    def normalized(self) -> dict[str, int]:
        """How many times each normalization applied (every name listed)."""
        counts = dict.fromkeys(normalize.NAMES, 0)
        for flow in self.flows:
            for name in flow.normalized:
                counts[name] += 1
        return counts

    @property
    def counts(self) -> dict[str, int]:
        """Exchanges, agreeing and differing exchanges, unexplained differences."""
        differing = len(self.differing)
        return {
            "exchanges": len(self.flows),
            "agree": len(self.flows) - differing,
            "differ": differing,
            "unexplained": len(self.unexplained),
        }

    def flow(self, index: int) -> ExchangeComparison | None:
        """The exchange at capture position ``index``, if either side replayed it."""
        return next((f for f in self.flows if f.index == index), None)

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One dict per exchange (keys: :data:`COLUMNS`)."""
        return [f.row() for f in self.flows]

    def frame(self, *, differing: bool = False) -> Any:
        """The rows as a pandas DataFrame (only differing exchanges if asked)."""
        from wasmkit.diff import compare_frames  # pandas loads only when asked for

        return compare_frames.envoy_comparison(self, differing=differing)

    def differences_frame(self) -> Any:
        """The unexplained differences as a DataFrame: index, field, wasmkit, envoy."""
        from wasmkit.diff import compare_frames

        return compare_frames.envoy_differences(self)

    def headline(self) -> str:
        """One line: identical or how many exchanges and fields differ."""
        counts = self.counts
        what = f"{_name(self.wasmkit.filter)}: {counts['exchanges']} exchanges"
        if self.identical:
            return f"wasmkit and Envoy agree: {what}, identical"
        return (
            f"wasmkit and Envoy differ: {what}, {counts['differ']} differ, "
            f"{counts['unexplained']} unexplained differences"
        )

    def normalized_line(self) -> str:
        """``normalized: date 3, framing 1`` (only those that applied)."""
        used = [f"{n} {c}" for n, c in self.normalized.items() if c]
        return "normalized: " + (", ".join(used) if used else "nothing")

    def text(self, *, limit: int | None = None) -> str:
        """The report for people: headline, normalizations, one line per difference."""
        lines = [self.headline(), self.normalized_line()]
        lines += [f"note: {n}" for n in self.notes]
        found = self.unexplained
        shown = found if limit is None else found[:limit]
        lines += [d.line() for d in shown]
        if len(shown) < len(found):
            lines.append(f"… and {len(found) - len(shown)} more differences")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        counts = self.counts
        return (
            f"<EnvoyComparison {_name(self.wasmkit.filter)!r}: "
            f"{counts['exchanges']} exchanges, {counts['differ']} differ, "
            f"{counts['unexplained']} unexplained>"
        )

    def _repr_html_(self) -> str:
        def cell(value: Any) -> str:
            return html.escape("" if value is None else str(value))

        found = self.unexplained
        rows = "".join(
            f"<tr><td>{d.index}</td><td><code>{cell(d.field)}</code></td>"
            f"<td>{cell(d.wasmkit)}</td><td>{cell(d.envoy)}</td></tr>"
            for d in found[:_HTML_ROWS]
        )
        more = len(found) - _HTML_ROWS
        notes = "".join(f"<p>{cell(n)}</p>" for n in self.notes)
        return (
            f'<div class="wasmkit-envoy-compare"><p><b>{cell(self.headline())}</b>'
            f"</p><p>{cell(self.normalized_line())}</p>{notes}"
            + (
                "<table><tr><th>flow</th><th>field</th><th>wasmkit</th>"
                f"<th>Envoy</th></tr>{rows}</table>"
                if found
                else ""
            )
            + (f"<p>… and {more} more</p>" if more > 0 else "")
            + "</div>"
        )

    def show(self) -> Any:
        """The replay explorer of the wasmkit side with an Envoy column.

        Needs ipywidgets (a notebook dependency).
        """
        from wasmkit.notebook import explorer  # the one reach into the notebook

        return explorer.ReplayExplorer(self.wasmkit, envoy=self)


_HTML_ROWS = 200


def _name(filter: str) -> str:
    first = filter.strip().splitlines()[0] if filter.strip() else filter
    return first if len(first) <= 80 else first[:60] + " …"


def compare_envoy(
    wasmkit: ReplayResult, envoy: ReplayResult, *, notes: list[str] | None = None
) -> EnvoyComparison:
    """Compare a wasmkit replay with an Envoy replay of the same capture.

    Exchanges are paired by capture index. ``notes`` say what the Envoy replay
    did not reproduce.

    Raises:
        ValueError: ``envoy`` is not an Envoy replay, or ``wasmkit`` is.
    """
    if envoy.runtime != "envoy" or wasmkit.runtime == "envoy":
        raise ValueError(
            "compare_envoy: pass a wasmkit replay, then an Envoy replay "
            f"(got {wasmkit.runtime!r} and {envoy.runtime!r})"
        )
    by_w = {f.index: f for f in wasmkit.flows}
    by_e = {f.index: f for f in envoy.flows}
    flows = [compare_flows(i, by_w.get(i), by_e.get(i)) for i in sorted({*by_w, *by_e})]
    return EnvoyComparison(wasmkit, envoy, flows, list(notes or []))


__all__ = [
    "COLUMNS",
    "Difference",
    "EnvoyComparison",
    "ExchangeComparison",
    "client_response",
    "compare_envoy",
    "compare_flows",
    "upstream_request",
]

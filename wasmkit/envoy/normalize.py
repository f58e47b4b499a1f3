"""What the comparison with Envoy does not count as a difference, as data.

Each :class:`Normalization` names the header fields it touches, on which
message (the request the upstream received, the response the client got),
the exact rule and why the difference is not the filter's nor wasmkit's. The
rules run on both sides' header fields before they are compared; each time a
rule changes the outcome of a comparison it is counted (see
:attr:`wasmkit.envoy.differ.EnvoyComparison.normalized`). Nothing else is
ignored: any other difference is *unexplained*.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

UPSTREAM = "upstream_request"
"""The request as the upstream received it."""
CLIENT = "client_response"
"""The response as the client received it."""
LOGS = "logs"
"""The filter's log lines."""

SMALL_BODY = 16 * 1024
"""Envoy reads a socket 16 KiB at a time: a body up to this size reaches
the filter as one data frame (then the codec's end), a larger one in the
pieces each read event brought."""

Fields = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Normalization:
    """One kind of difference between wasmkit and Envoy that is not counted."""

    name: str
    """Short name, as counted."""
    messages: tuple[str, ...]
    """Which messages it applies to (:data:`UPSTREAM`, :data:`CLIENT`)."""
    fields: tuple[str, ...]
    """The header fields it touches."""
    rule: str
    """Exactly what is set aside."""
    why: str
    """Why that is not a difference in behaviour."""


NORMALIZATIONS: tuple[Normalization, ...] = (
    Normalization(
        "framing",
        (UPSTREAM, CLIENT),
        ("content-length", "transfer-encoding"),
        "which of content-length, transfer-encoding: chunked or neither frames "
        "the body, and where that field sits, when both sides carry the same "
        "body bytes and each side's framing is valid for them (content-length "
        "equal to the body's size, or chunked, or none: an empty request body, "
        "a response read to the end of the connection); never on responses to "
        "HEAD, 1xx, 204 or 304, where content-length means something else",
        "on HTTP/1.1 Envoy's codec chooses the framing when it writes a message "
        "(a body the filter changed goes out chunked, the field last); the "
        "bytes the peer receives are the same",
    ),
    Normalization(
        "date",
        (CLIENT,),
        ("date",),
        "the value of date when both sides have the same number of date "
        "fields and every value is an HTTP date",
        "Envoy stamps its wall clock on responses it makes (local replies, the "
        "router's 503); wasmkit stamps the replay's virtual clock",
    ),
    Normalization(
        "x-request-id",
        (UPSTREAM,),
        ("x-request-id",),
        "the value of x-request-id when both sides have the same number of "
        "them and every value is a UUID other than the captured request's",
        "Envoy generates a random UUID for each request (generate_request_id)",
    ),
    Normalization(
        "x-envoy-upstream-service-time",
        (CLIENT,),
        ("x-envoy-upstream-service-time",),
        "the value when both sides have the same number of them and every "
        "value is a whole number",
        "Envoy's router measures the upstream's answer in wall-clock ms",
    ),
    Normalization(
        "hop-by-hop",
        (CLIENT,),
        ("connection", "keep-alive", "proxy-connection"),
        "these fields on the response the client received",
        "Envoy's downstream HTTP/1 codec writes them for the client's "
        "connection (the replay opens one per exchange), after the filters "
        "and the connection manager: they belong to the connection, not to "
        "the response",
    ),
    Normalization(
        "downstream-scheme",
        (UPSTREAM,),
        (":scheme", "x-forwarded-proto"),
        "https on wasmkit's side against http on Envoy's, for an exchange "
        "captured over TLS",
        "the replay sends every exchange to Envoy's plaintext listener, so "
        "Envoy sees http where the captured client used https",
    ),
    Normalization(
        "body-reads",
        (LOGS,),
        ("proxy_on_request_body", "proxy_on_response_body"),
        "the log lines the filter wrote in the body callbacks of a body of "
        "more than 16 KiB, when the lines before them and the lines after "
        "them agree exactly",
        "Envoy hands the filter each piece of a large body as its socket "
        "reads brought it (how many and how big depends on timing); wasmkit "
        "delivers the captured body in one frame or in chunk_size pieces",
    ),
)
"""Every normalization, in the order they run."""

NAMES = tuple(n.name for n in NORMALIZATIONS)


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules need to know about the exchange."""

    method: str
    """The captured request's method."""
    status: int | None
    """The status of the response being compared (``None`` for requests)."""
    captured_request_id: bytes | None
    """The captured request's own ``x-request-id``."""
    captured_scheme: str
    """The captured request's scheme (``http`` / ``https``)."""


@dataclass(slots=True)
class Pair:
    """One message's header fields on both sides, as the rules leave them."""

    message: str
    """:data:`UPSTREAM` or :data:`CLIENT`."""
    wasmkit: Fields
    """wasmkit's fields, pseudo-headers included."""
    envoy: Fields
    """Envoy's fields."""
    wasmkit_body: bytes
    """wasmkit's body."""
    envoy_body: bytes
    """Envoy's body."""


Rule = Callable[[Pair, Context], bool]

_MASK = b"<normalized>"


def _framing_valid(fields: Fields, body: bytes, message: str) -> bool:
    lengths = [v for k, v in fields if k == b"content-length"]
    codings = [v for k, v in fields if k == b"transfer-encoding"]
    if codings:
        return not lengths and codings[-1].strip().lower().endswith(b"chunked")
    if lengths:
        return len(lengths) == 1 and lengths[0].strip() == str(len(body)).encode()
    return not body or message == CLIENT


def _framing(pair: Pair, ctx: Context) -> bool:
    status = ctx.status or 0
    if pair.message == CLIENT and (
        ctx.method == "HEAD" or status < 200 or status in (204, 304)
    ):
        return False
    if pair.wasmkit_body != pair.envoy_body:
        return False
    body = pair.wasmkit_body
    w, e = pair.wasmkit, pair.envoy
    if not (
        _framing_valid(w, body, pair.message) and _framing_valid(e, body, pair.message)
    ):
        return False
    names = (b"content-length", b"transfer-encoding")
    w_rest = [f for f in w if f[0] not in names]
    e_rest = [f for f in e if f[0] not in names]
    framed_w = [f for f in w if f[0] in names]
    framed_e = [f for f in e if f[0] in names]
    # Counted when the framing differs, or only where it sits (by name: other
    # rules may still set the values of other fields aside).
    names_w, names_e = [k for k, _ in w], [k for k, _ in e]
    moved = names_w != names_e and [k for k, _ in w_rest] == [k for k, _ in e_rest]
    applied = framed_w != framed_e or moved
    pair.wasmkit, pair.envoy = w_rest, e_rest
    return applied


def _is_date(value: bytes) -> bool:
    try:
        parsedate_to_datetime(value.decode("ascii"))
    except (ValueError, TypeError, UnicodeDecodeError):
        return False
    return True


def _is_generated_id(ctx: Context) -> Callable[[bytes], bool]:
    def check(value: bytes) -> bool:
        if value == ctx.captured_request_id:
            return False
        try:
            uuid.UUID(value.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            return False
        return True

    return check


def _mask_values(pair: Pair, name: bytes, valid: Callable[[bytes], bool]) -> bool:
    w_at = [i for i, (k, _) in enumerate(pair.wasmkit) if k == name]
    e_at = [i for i, (k, _) in enumerate(pair.envoy) if k == name]
    if not w_at or len(w_at) != len(e_at):
        return False
    w_values = [pair.wasmkit[i][1] for i in w_at]
    e_values = [pair.envoy[i][1] for i in e_at]
    if w_values == e_values or not all(map(valid, w_values + e_values)):
        return False
    for i in w_at:
        pair.wasmkit[i] = (name, _MASK)
    for i in e_at:
        pair.envoy[i] = (name, _MASK)
    return True


def _date(pair: Pair, ctx: Context) -> bool:
    return _mask_values(pair, b"date", _is_date)


def _request_id(pair: Pair, ctx: Context) -> bool:
    return _mask_values(pair, b"x-request-id", _is_generated_id(ctx))


def _service_time(pair: Pair, ctx: Context) -> bool:
    return _mask_values(
        pair, b"x-envoy-upstream-service-time", lambda v: v.strip().isdigit()
    )


def _hop_by_hop(pair: Pair, ctx: Context) -> bool:
    names = (b"connection", b"keep-alive", b"proxy-connection")
    w = [f for f in pair.wasmkit if f[0] in names]
    e = [f for f in pair.envoy if f[0] in names]
    if not w and not e:
        return False
    pair.wasmkit = [f for f in pair.wasmkit if f[0] not in names]
    pair.envoy = [f for f in pair.envoy if f[0] not in names]
    return w != e


def _scheme(pair: Pair, ctx: Context) -> bool:
    if ctx.captured_scheme != "https":
        return False
    applied = False
    for name in (b":scheme", b"x-forwarded-proto"):
        w = [v for k, v in pair.wasmkit if k == name]
        e_at = [i for i, (k, _) in enumerate(pair.envoy) if k == name]
        if w == [b"https"] and len(e_at) == 1 and pair.envoy[e_at[0]][1] == b"http":
            pair.envoy[e_at[0]] = (name, b"https")
            applied = True
    return applied


RULES: dict[str, Rule] = {
    "framing": _framing,
    "date": _date,
    "x-request-id": _request_id,
    "x-envoy-upstream-service-time": _service_time,
    "hop-by-hop": _hop_by_hop,
    "downstream-scheme": _scheme,
}
"""The rule of each normalization, by name."""


def body_reads(
    wasmkit: list[tuple[str, str]], envoy: list[str], large: list[str]
) -> tuple[list[str], list[str], bool]:
    """The ``body-reads`` normalization on one exchange's logs.

    ``wasmkit``: (callback, line) per log line; ``envoy``: Envoy's lines;
    ``large``: the body callbacks whose body was over :data:`SMALL_BODY`.
    Each such callback's run of lines on wasmkit's side, and what stands
    between the same prefix and suffix on Envoy's, become one marker line on
    both sides. Returns both sides' lines and whether that changed anything.
    """
    w = list(wasmkit)
    e = list(envoy)
    changed = False
    for callback in large:
        at = [i for i, (cb, _) in enumerate(w) if cb == callback]
        if not at or at[-1] - at[0] + 1 != len(at):
            continue  # none, or other callbacks' lines in between
        i1, i2 = at[0], at[-1] + 1
        head = [line for _, line in w[:i1]]
        tail = [line for _, line in w[i2:]]
        j2 = len(e) - len(tail)
        if j2 < i1 or e[:i1] != head or e[j2:] != tail:
            continue
        if [line for _, line in w[i1:i2]] != e[i1:j2]:
            changed = True
        marker = f"({callback}: lines as the body's reads came)"
        w[i1:i2] = [(callback + " normalized", marker)]
        e[i1:j2] = [marker]
    return [line for _, line in w], e, changed


def apply(pair: Pair, ctx: Context) -> list[str]:
    """Run every rule for ``pair``'s message; the names of those that applied."""
    applied = []
    for norm in NORMALIZATIONS:
        if pair.message in norm.messages and RULES[norm.name](pair, ctx):
            applied.append(norm.name)
    return applied

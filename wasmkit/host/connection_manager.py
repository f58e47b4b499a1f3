"""What Envoy's HTTP connection manager and router do around the filter.

The filter never sees the client's request exactly as sent, nor does the
client get exactly what the filter passed on: Envoy 1.40's HTTP connection
manager (HCM) and router change messages at four points, modelled here with
Envoy's defaults (:class:`ConnectionManager` holds the knobs users set in
Envoy's config):

(a) :func:`request_to_filter`: the client's request as the filter chain
    sees it (hop-by-hop headers removed, ``x-forwarded-proto``,
    ``x-request-id``, ``x-forwarded-for``);
(b) :func:`request_to_upstream`: the filter's request as the upstream
    receives it (the router's ``x-envoy-expected-rq-timeout-ms``, HTTP/1
    framing);
(c) :func:`response_to_filter`: the upstream's response as the filter's
    response path sees it (``x-envoy-upstream-service-time``, 204 without
    ``content-length``);
(d) :func:`response_to_client`: the filter's response as the client gets it
    (``server``, ``date``, hop-by-hop removed, ``connection: close``, HTTP/1
    framing).

Each rule names the Envoy source it follows; rules marked *measured* were
checked against a real Envoy 1.40 (``tests/envoy/test_connection_manager.py``).
Every function returns a new message and appends one line per change to
``changes`` (the stream's :attr:`~wasmkit.host.stream.StreamResult.host_changes`).
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from wasmkit.host.message import (
    Connection,
    HeaderPairs,
    HttpMessage,
    LocalReply,
    header_value,
    remove_header,
    set_header,
)

ServerHeaderTransformation = Literal["OVERWRITE", "APPEND_IF_ABSENT", "PASS_THROUGH"]

DEFAULT_BUFFER_LIMIT = 1 << 20
"""Envoy's default ``per_connection_buffer_limit_bytes`` (1 MiB)."""


@dataclass(frozen=True, slots=True)
class ConnectionManager:
    """Knobs of Envoy's HTTP connection manager and router (defaults: Envoy 1.40's).

    Names follow Envoy's config
    (``envoy.extensions.filters.network.http_connection_manager.v3``, the
    router's ``suppress_envoy_headers``, the route's ``timeout``).
    """

    generate_request_id: bool = True
    """Add an ``x-request-id`` (a UUID4) when the request has none."""
    preserve_external_request_id: bool = False
    """Keep a client's ``x-request-id`` also on edge requests
    (``use_remote_address``), which otherwise get a new one."""
    use_remote_address: bool = False
    """Treat the client as the edge: append its address to
    ``x-forwarded-for``, set ``x-forwarded-proto`` and
    ``x-envoy-external-address``."""
    xff_num_trusted_hops: int = 0
    """Trusted proxies in front of Envoy (the addresses at the end of
    ``x-forwarded-for`` that are skipped to find the client)."""
    skip_xff_append: bool = False
    """With ``use_remote_address``, leave ``x-forwarded-for`` as it is."""
    server_name: str = "envoy"
    """The ``server`` header Envoy writes into responses."""
    server_header_transformation: ServerHeaderTransformation = "OVERWRITE"
    """``OVERWRITE`` the upstream's ``server``; ``APPEND_IF_ABSENT``: only
    when it has none; ``PASS_THROUGH``: never touch it."""
    suppress_envoy_headers: bool = False
    """The router adds no ``x-envoy-*`` headers (expected timeout upstream,
    upstream service time to the response)."""
    route_timeout_ms: int = 15_000
    """The route's timeout (ms), sent upstream as
    ``x-envoy-expected-rq-timeout-ms``; 0: none."""
    upgrade_types: tuple[str, ...] = ()
    """``upgrade_configs`` (``websocket`` ...): requests upgrading to these
    keep their ``connection`` and ``upgrade`` headers."""
    scheme: str | None = None
    """The downstream scheme for ``x-forwarded-proto``; ``None``: the
    request's (a capture's TLS flows are ``https``). Envoy's listener in
    :mod:`wasmkit.envoy` is plain text: ``"http"``."""
    per_connection_buffer_limit_bytes: int = DEFAULT_BUFFER_LIMIT
    """The listener's buffer limit (bytes): a body the filter holds (pausing
    its body callbacks, or its headers) past it ends the stream as Envoy's
    filter manager does (measured): a request gets Envoy's 413 ``Payload Too
    Large``, a response 500 ``Internal Server Error``, or a reset once its
    headers went out."""
    proxy_100_continue: bool = False
    """Forward ``expect: 100-continue`` instead of answering it."""
    enable_trailers: bool = False
    """``http_protocol_options.enable_trailers``: Envoy's HTTP/1 codec drops
    trailers unless set (measured: the filter sees neither the client's nor
    the upstream's, and sends none on). The listener and the upstream
    cluster are HTTP/1.1, Envoy's defaults."""
    http1_codec_end_frame: bool = True
    """``True``: bodies arrive as Envoy 1.40 delivers them. Envoy's HTTP/1
    codec delivers a body (the client's request, the upstream's response)
    without its end, then an empty data frame with
    ``end_of_stream`` (source/common/http/http1/codec_impl.cc
    ``onMessageComplete`` dispatches an empty data frame with end_stream;
    measured: ``size=N eos=0``, then ``size=0 eos=1``, or ``size=N eos=1``
    when the filter held the first). A body followed by trailers ends with
    the trailers; bodiless messages and the replies Envoy makes itself
    (local replies, the router's 503) have no such frame; trailers dropped
    by the codec (``enable_trailers`` off) leave the empty frame in their
    place (measured). ``False``: the body arrives with ``end_of_stream`` in
    its last chunk, as a client sending one HTTP/2 DATA frame with
    END_STREAM would deliver it."""
    local_address: str | None = None
    """Envoy's own address, which ``use_remote_address`` appends to
    ``x-forwarded-for`` in place of a loopback peer (Envoy: the host's first
    non-loopback address); ``None``: the connection's destination address."""

    def __post_init__(self) -> None:
        if self.server_header_transformation not in (
            "OVERWRITE",
            "APPEND_IF_ABSENT",
            "PASS_THROUGH",
        ):
            raise ValueError(
                "server_header_transformation must be OVERWRITE, APPEND_IF_ABSENT "
                f"or PASS_THROUGH, not {self.server_header_transformation!r}"
            )
        if self.xff_num_trusted_hops < 0 or self.route_timeout_ms < 0:
            raise ValueError("xff_num_trusted_hops and route_timeout_ms must be >= 0")


ENVOY_DEFAULTS = ConnectionManager()
"""Envoy 1.40's defaults."""


@dataclass(frozen=True, slots=True)
class UpstreamReset:
    """The upstream gave no response: the router answers 503 itself.

    ``reason`` is Envoy's reset reason text (``connection termination``,
    ``remote connection failure, ...``; see :func:`reset_reason`).
    """

    reason: str = "connection termination"


# -- helpers ---------------------------------------------------------------------


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def _note(changes: list[str], where: str, what: str) -> None:
    changes.append(f"{where}: {what}")


def _show(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _uuid4(raw: bytes) -> bytes:
    # str(uuid.UUID(bytes=raw, version=4)), without the UUID object.
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex().encode()
    return b"-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:]))


def request_id(rng: random.Random) -> bytes:
    """A UUID4 ``x-request-id`` drawn from ``rng`` (the VM's seeded generator)."""
    return _uuid4(rng.getrandbits(128).to_bytes(16, "big"))


def flow_request_id(seed: int, index: int) -> bytes:
    """The UUID4 ``x-request-id`` of a capture's flow ``index`` for VM ``seed``.

    The replay engine draws ids per flow rather than in sequence, so a flow
    gets the same id however a replay is cut between worker processes.
    """
    digest = hashlib.blake2b(
        b"%d:%d" % (seed, index), digest_size=16, person=b"x-request-id"
    ).digest()
    return _uuid4(digest)


_HOP_BY_HOP_REQUEST = (b"keep-alive", b"proxy-connection", b"transfer-encoding")
# Connection tokens that name no header (source/common/http/utility.cc
# sanitizeConnectionHeader).
_NOT_NOMINATED = {b"close", b"keep-alive", b"upgrade", b"http2-settings"}
# What cleanInternalHeaders removes from requests that are not internal
# (source/common/http/conn_manager_utility.cc).
_INTERNAL_ONLY = (
    b"x-envoy-retriable-status-codes",
    b"x-envoy-retriable-header-names",
    b"x-envoy-retry-on",
    b"x-envoy-retry-grpc-on",
    b"x-envoy-max-retries",
    b"x-envoy-upstream-alt-stat-name",
    b"x-envoy-upstream-rq-timeout-ms",
    b"x-envoy-upstream-rq-per-try-timeout-ms",
    b"x-envoy-upstream-rq-timeout-alt-response",
    b"x-envoy-expected-rq-timeout-ms",
    b"x-envoy-force-trace",
    b"x-envoy-ip-tags",
    b"x-envoy-original-url",
    b"x-envoy-hedge-on-per-try-timeout",
)
_EDGE_ONLY = (
    b"x-envoy-decorator-operation",
    b"x-envoy-downstream-service-cluster",
    b"x-envoy-downstream-service-node",
)


def _is_upgrade(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    upgrade = header_value(headers, b"upgrade")
    connection = header_value(headers, b"connection")
    return (
        upgrade is not None
        and connection is not None
        and b"upgrade" in _tokens(connection)
    )


def _xff_address(value: bytes | None, skip: int) -> tuple[str | None, bool]:
    # Utility::getLastAddressFromXFF: the address ``skip`` entries from the
    # end, and whether it is the only one.
    if value is None:
        return None, False
    parts = value.decode("latin-1").split(",")
    if skip >= len(parts):
        return None, False
    candidate = parts[len(parts) - 1 - skip].strip()
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return None, False
    return candidate, len(parts) == 1 and skip == 0


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# -- (a) the client's request -> what the filter chain sees ----------------------

_first = operator.itemgetter(0)
# Request headers the connection manager may remove, keep or rewrite.
_SPECIAL = frozenset(
    {
        b"connection",
        b"upgrade",
        b"te",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
        b"x-envoy-internal",
        b"x-envoy-external-address",
        *_HOP_BY_HOP_REQUEST,
        *_INTERNAL_ONLY,
        *_EDGE_ONLY,
    }
)


def _scheme(cm: ConnectionManager, headers: HeaderPairs) -> bytes:
    # The downstream scheme: the knob's, else the request's (http or https).
    scheme = (
        cm.scheme.encode()
        if cm.scheme
        else (header_value(headers, b":scheme") or b"http").lower()
    )
    return scheme if scheme in (b"http", b"https") else b"http"


def request_to_filter(
    cm: ConnectionManager,
    request: HttpMessage,
    connection: Connection | None,
    new_id: Callable[[], bytes],
    changes: list[str],
) -> HttpMessage:
    """The client's request as Envoy's HCM hands it to the filter chain.

    Args:
        cm: the knobs.
        request: the request as the client sent it (not changed).
        connection: the client connection (``None``: the default one).
        new_id: makes an ``x-request-id`` (seeded, so replays repeat; see
            :func:`request_id`, :func:`flow_request_id`).
        changes: gets one line per change.
    """
    headers = list(request.headers)
    where = "request"
    if not cm.use_remote_address and _SPECIAL.isdisjoint(map(_first, headers)):
        # Nothing to remove or keep: the common case, without the lookups.
        scheme = _scheme(cm, headers)
        headers.append((b"x-forwarded-proto", scheme))
        _note(changes, where, f"added x-forwarded-proto: {_show(scheme)}")
        if header_value(headers, b":scheme") != scheme:
            set_header(headers, b":scheme", scheme)
            _note(
                changes, where, f"set :scheme: {_show(scheme)} (from x-forwarded-proto)"
            )
        if cm.generate_request_id:
            value = new_id()
            headers.append((b"x-request-id", value))
            _note(changes, where, f"set x-request-id: {_show(value)}")
        trailers = _trailers(cm, request.trailers, where, changes)
        return HttpMessage(headers, request.body, trailers)
    conn = connection or Connection()
    # HTTP/1 codec: headers the Connection header nominates go (measured;
    # source/common/http/utility.cc sanitizeConnectionHeader).
    connection_value = header_value(headers, b"connection")
    upgrade = _is_upgrade(headers) and (
        (header_value(headers, b"upgrade") or b"").strip().lower()
        in {t.lower().encode() for t in cm.upgrade_types}
    )
    if connection_value is not None and not upgrade:
        for token in _tokens(connection_value):
            if token in _NOT_NOMINATED or token in (b"connection", b"te"):
                continue
            if remove_header(headers, token):
                _note(changes, where, f"removed {_show(token)} (named by connection)")
    # source/common/http/conn_manager_utility.cc mutateRequestHeaders: hop-by-hop
    # headers go; te keeps only "trailers" (sanitizeTEHeader; measured).
    if not upgrade:
        for name in (b"connection", b"upgrade"):
            if remove_header(headers, name):
                _note(changes, where, f"removed {_show(name)} (hop-by-hop)")
        te = header_value(headers, b"te")
        if te is not None:
            if b"trailers" in _tokens(te):
                if te != b"trailers":
                    set_header(headers, b"te", b"trailers")
                    _note(changes, where, "set te: trailers (other codings dropped)")
            else:
                remove_header(headers, b"te")
                _note(changes, where, "removed te (not trailers)")
    for name in (b"x-envoy-internal", *_HOP_BY_HOP_REQUEST):
        if remove_header(headers, name):
            _note(changes, where, f"removed {_show(name)} (hop-by-hop)")
    # conn_manager_impl.cc decodeHeaders: Envoy answers 100-continue itself.
    expect = header_value(headers, b"expect")
    if (
        not cm.proxy_100_continue
        and expect is not None
        and expect.lower() == b"100-continue"
    ):
        remove_header(headers, b"expect")
        _note(changes, where, "removed expect: 100-continue (answered by Envoy)")
    scheme = _scheme(cm, headers)
    xff = header_value(headers, b"x-forwarded-for")
    remote: str | None
    if cm.use_remote_address:
        single = xff is None
        remote = None
        if cm.xff_num_trusted_hops > 0:
            remote, _ = _xff_address(xff, cm.xff_num_trusted_hops - 1)
        if remote is None:
            remote = conn.source_address
        if not cm.skip_xff_append:
            # A loopback peer is replaced by Envoy's own address.
            peer = conn.source_address
            own = cm.local_address or conn.destination_address
            appended = own if _is_loopback(peer) else peer
            if xff is None:
                headers.append((b"x-forwarded-for", appended.encode()))
            else:
                set_header(headers, b"x-forwarded-for", xff + b"," + appended.encode())
            _note(changes, where, f"appended {appended} to x-forwarded-for")
        if (
            cm.xff_num_trusted_hops == 0
            or header_value(headers, b"x-forwarded-proto") is None
        ):
            old = header_value(headers, b"x-forwarded-proto")
            set_header(headers, b"x-forwarded-proto", scheme)
            if old != scheme:
                _note(changes, where, f"set x-forwarded-proto: {_show(scheme)}")
    else:
        remote, single = _xff_address(xff, cm.xff_num_trusted_hops)
    if header_value(headers, b"x-forwarded-proto") is None:
        headers.append((b"x-forwarded-proto", scheme))
        _note(changes, where, f"added x-forwarded-proto: {_show(scheme)}")
    # HTTP/1 has no :scheme on the wire: Envoy takes x-forwarded-proto's
    # (measured: a client's x-forwarded-proto: https makes :scheme https).
    proto = (header_value(headers, b"x-forwarded-proto") or b"").lower()
    if proto in (b"http", b"https") and header_value(headers, b":scheme") != proto:
        set_header(headers, b":scheme", proto)
        _note(changes, where, f"set :scheme: {_show(proto)} (from x-forwarded-proto)")
    # Envoy 1.40 has no internal addresses unless internal_address_config
    # names some, so every request is external: its x-envoy-* controls go.
    edge = cm.use_remote_address
    del single  # internal requests need internal_address_config
    for name in _INTERNAL_ONLY + (_EDGE_ONLY if edge else ()):
        if remove_header(headers, name):
            _note(changes, where, f"removed {_show(name)} (external request)")
    if edge and remote is not None:
        set_header(headers, b"x-envoy-external-address", remote.encode())
        _note(changes, where, f"set x-envoy-external-address: {remote}")
    if cm.generate_request_id:
        force = edge and not cm.preserve_external_request_id
        if force or header_value(headers, b"x-request-id") is None:
            value = new_id()
            set_header(headers, b"x-request-id", value)
            _note(changes, where, f"set x-request-id: {_show(value)}")
    trailers = _trailers(cm, request.trailers, where, changes)
    return HttpMessage(headers, request.body, trailers)


def _trailers(
    cm: ConnectionManager,
    trailers: HeaderPairs | None,
    where: str,
    changes: list[str],
) -> HeaderPairs | None:
    # http1/codec_impl.cc: without enable_trailers, trailers are dropped.
    if trailers is None:
        return None
    if not cm.enable_trailers:
        _note(changes, where, "dropped the trailers (HTTP/1, enable_trailers off)")
        return None
    return list(trailers)


# -- (b) the filter's request -> what the upstream receives ----------------------


_BODILESS_METHODS = {b"GET", b"HEAD", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE"}


def request_to_upstream(
    cm: ConnectionManager, forwarded: HttpMessage, changes: list[str]
) -> HttpMessage:
    """The filter's request as the router sends it upstream (HTTP/1.1).

    source/common/router/router.cc: ``x-envoy-expected-rq-timeout-ms`` (the
    route timeout) unless ``suppress_envoy_headers``; the HTTP/1 codec frames
    a body without ``content-length`` as chunked (measured).
    """
    headers = list(forwarded.headers)
    where = "upstream"
    trailers = _trailers(cm, forwarded.trailers, where, changes)
    if cm.route_timeout_ms and not cm.suppress_envoy_headers:
        value = str(cm.route_timeout_ms).encode()
        set_header(headers, b"x-envoy-expected-rq-timeout-ms", value)
        _note(changes, where, f"set x-envoy-expected-rq-timeout-ms: {_show(value)}")
    message = HttpMessage(headers, forwarded.body, trailers)
    _frame_request(headers, message, changes)
    return message


def _frame_request(
    headers: HeaderPairs, message: HttpMessage, changes: list[str]
) -> None:
    # source/common/http/http1/codec_impl.cc encodeHeadersBase.
    if header_value(headers, b"content-length") is not None:
        return
    if header_value(headers, b"transfer-encoding") is not None:
        return
    if message.body or message.trailers is not None:
        headers.append((b"transfer-encoding", b"chunked"))
        _note(changes, "upstream", "added transfer-encoding: chunked (HTTP/1 framing)")
        return
    method = (header_value(headers, b":method") or b"").upper()
    if method not in _BODILESS_METHODS:
        headers.append((b"content-length", b"0"))
        _note(changes, "upstream", "added content-length: 0 (HTTP/1 framing)")


# -- (c) the upstream's response -> what the filter's response path sees ---------


def response_to_filter(
    cm: ConnectionManager,
    response: HttpMessage,
    changes: list[str],
    *,
    service_time_ms: int = 0,
) -> HttpMessage:
    """The upstream's response as the router hands it to the filter.

    Args:
        cm: the knobs.
        response: the upstream's response (not changed).
        changes: gets one line per change.
        service_time_ms: virtual time between the request going upstream and
            the response's headers (``x-envoy-upstream-service-time``).
    """
    headers = list(response.headers)
    where = "response"
    # HTTP/1 client codec: keep-alive is consumed by the connection pool
    # (measured; connection and proxy-connection still reach the filter).
    if remove_header(headers, b"keep-alive"):
        _note(changes, where, "removed keep-alive (hop-by-hop)")
    status = response.status
    if status == 204 and remove_header(headers, b"content-length"):
        # http1/codec_impl.cc: a 204 has no content-length (measured).
        _note(changes, where, "removed content-length (204)")
    if not cm.suppress_envoy_headers:
        # router.cc onUpstreamHeaders.
        value = str(max(0, service_time_ms)).encode()
        set_header(headers, b"x-envoy-upstream-service-time", value)
        _note(changes, where, f"set x-envoy-upstream-service-time: {_show(value)}")
    trailers = _trailers(cm, response.trailers, where, changes)
    return HttpMessage(headers, response.body, trailers)


def router_reply(reason: str, *, grpc: bool = False, head: bool = False) -> HttpMessage:
    """The 503 Envoy's router sends when the upstream gave no response.

    source/common/router/router.cc onUpstreamReset: ``upstream connect error
    or disconnect/reset before headers. reset reason: <reason>`` as a local
    reply (measured: ``content-length``, ``content-type: text/plain``; no
    ``x-envoy-upstream-service-time``; a gRPC request gets it trailers-only,
    ``grpc-status: 14`` with the text as ``grpc-message``).
    """
    body = (
        "upstream connect error or disconnect/reset before headers. "
        f"reset reason: {reason}"
    ).encode()
    return LocalReply(503, body=body).to_message(grpc=grpc, head=head)


REFUSED_REASON = "remote connection failure"
"""Envoy's reset reason when the upstream refuses the connection (measured)."""


def reset_reason(error: str | None) -> str:
    """Envoy's reset reason for a capture's error message.

    A refused connection (``Connection refused``, ``Connect call failed``,
    errno 111) gives Envoy's refused text; anything else (a connection closed
    or reset before the response) ``connection termination``.
    """
    text = (error or "").lower()
    if "refused" in text or "connect call failed" in text or "errno 111" in text:
        return REFUSED_REASON
    return "connection termination"


# -- (d) the filter's response -> what the client receives -----------------------


def response_to_client(
    cm: ConnectionManager,
    response: HttpMessage,
    request: HttpMessage,
    changes: list[str],
    *,
    date: bytes,
    close: bool = False,
) -> HttpMessage:
    """The filter's response as Envoy sends it to the client (HTTP/1.1).

    Args:
        cm: the knobs.
        response: what the filter passed on (not changed).
        request: the request as the filter chain saw it (method, upgrade).
        changes: gets one line per change.
        date: the ``date`` value to add when the response has none (HTTP
            date of the virtual clock).
        close: Envoy closes the connection after this response (the client
            asked for it, see :func:`client_closes`, or a local reply came
            before the request was read whole): ``connection: close``.
    """
    headers = list(response.headers)
    names = set(map(_first, headers))
    where = "client"
    # conn_manager_impl.cc ActiveStream::encodeHeaders: date when absent, then
    # server per server_header_transformation (measured: appended in this
    # order, an existing server overwritten in place).
    if b"date" not in names:
        headers.append((b"date", date))
        _note(changes, where, "added date")
    transformation = cm.server_header_transformation
    server = header_value(headers, b"server") if b"server" in names else None
    name = cm.server_name.encode()
    if transformation == "OVERWRITE" or (
        transformation == "APPEND_IF_ABSENT" and server is None
    ):
        set_header(headers, b"server", name)
        if server != name:
            _note(changes, where, f"set server: {cm.server_name}")
    # conn_manager_utility.cc mutateResponseHeaders.
    upgrade = b"upgrade" in names and (
        _is_upgrade(request.headers) and _is_upgrade(headers)
    )
    hop = (b"transfer-encoding", b"keep-alive", b"proxy-connection")
    for hop_name in (() if upgrade else (b"connection", b"upgrade")) + hop:
        if hop_name in names and remove_header(headers, hop_name):
            _note(changes, where, f"removed {_show(hop_name)} (hop-by-hop)")
    if close:
        set_header(headers, b"connection", b"close")
        _note(changes, where, "set connection: close")
    method = (header_value(request.headers, b":method") or b"").upper()
    status = response.status or 200
    no_body = method == b"HEAD" or status in (204, 304) or status < 200
    body = b"" if no_body else response.body
    trailers = None if no_body else _trailers(cm, response.trailers, where, changes)
    if body != response.body:
        _note(changes, where, "dropped the body (HEAD, 204 or 304)")
    # http1/codec_impl.cc encodeHeadersBase: framing of what goes out.
    # No framing for 1xx, 204 and 304 (measured for 304); a HEAD response
    # without content-length says chunked, as its GET would (measured).
    bodiless_status = status in (204, 304) or status < 200
    if b"content-length" not in names and not bodiless_status:
        if method == b"HEAD" or body or trailers is not None:
            headers.append((b"transfer-encoding", b"chunked"))
            _note(changes, where, "added transfer-encoding: chunked (HTTP/1 framing)")
        else:
            headers.append((b"content-length", b"0"))
            _note(changes, where, "added content-length: 0 (HTTP/1 framing)")
    return HttpMessage(headers, body, None if trailers is None else list(trailers))


def client_closes(request: HttpMessage) -> bool:
    """Whether the client's request says ``connection: close``.

    Envoy then drains the connection and answers with ``connection: close``
    (measured).
    """
    value = header_value(request.headers, b"connection")
    return value is not None and b"close" in _tokens(value)


_DATES: dict[int, bytes] = {}


def http_date(ns: int) -> bytes:
    """An HTTP ``date`` value for ``ns`` nanoseconds since the epoch."""
    second = ns // 1_000_000_000
    value = _DATES.get(second)
    if value is None:
        if len(_DATES) > 256:
            _DATES.clear()
        value = _DATES[second] = email.utils.formatdate(second, usegmt=True).encode()
    return value

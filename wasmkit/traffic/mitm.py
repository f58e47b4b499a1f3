"""Read mitmproxy ``.flow`` files and HAR files into exchanges, one flow at a time.

The only module that imports mitmproxy. Files are read with mitmproxy's own
code (``mitmproxy.io``: ``tnetstring``, ``compat.migrate_flow``,
``Flow.from_state`` and ``har.request_to_flow``), never a re-implementation;
this module adds streaming, bounds, flow-by-flow error positions and the
conversion to :class:`~wasmkit.traffic.model.Exchange`.

Streaming: a ``.flow`` file is read one flow at a time; a HAR file's
``log.entries`` are decoded one entry at a time with the standard JSON decoder,
so a capture larger than memory can be replayed (:mod:`wasmkit.traffic._jsonstream`).
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from mitmproxy import dns, flow, flowfilter, http, tcp, udp
from mitmproxy import io as mitmio
from mitmproxy import version as mitmproxy_version
from mitmproxy.io import compat, har, tnetstring
from mitmproxy.net import encoding

from wasmkit.abi.constants import MAX_PAIRS_BYTES, MAX_PAIRS_COUNT
from wasmkit.errors import CaptureError, CaptureFormatError, CaptureReadError
from wasmkit.host.message import HeaderPairs, HttpMessage
from wasmkit.traffic import _atomic
from wasmkit.traffic import _jsonstream as jsonstream
from wasmkit.traffic.model import (
    CaptureStats,
    Exchange,
    Headers,
    Request,
    Response,
    Skipped,
)

FLOW_FORMAT_VERSION: int = mitmproxy_version.FLOW_FORMAT_VERSION
"""The newest ``.flow`` format version the installed mitmproxy reads."""

MAX_FLOW_BYTES = 1 << 30
"""Largest single flow (``.flow``) or HAR entry read, in bytes (1 GiB)."""

CaptureFormat = Literal["flow", "har"]


def sniff(path: str | os.PathLike[str]) -> CaptureFormat | None:
    """The format of the capture at ``path``: ``flow``, ``har``, or ``None`` if empty.

    Raises:
        CaptureFormatError: the file is neither a mitmproxy flow file nor HAR.
        CaptureError: the file cannot be opened.
    """
    try:
        with open(path, "rb") as fo:
            head = fo.read(64)
    except OSError as exc:
        raise CaptureError(f"cannot open capture {path}: {exc.strerror}") from exc
    return _sniff_bytes(head, str(path))


def _sniff_bytes(head: bytes, path: str) -> CaptureFormat | None:
    text = head.removeprefix(codecs.BOM_UTF8).lstrip(b" \t\r\n")
    if not text:
        return None if not head else "har"
    if text[:1] == b"{":
        return "har"
    if text[:1].isdigit() and head[:1].isdigit():
        return "flow"
    raise CaptureFormatError(
        f"{path} is not a mitmproxy .flow or HAR capture (it starts with {head[:16]!r})"
    )


def parse_filter(expr: str) -> flowfilter.TFilter:
    """Compile a mitmproxy filter expression (``~d example.com & ~m POST``).

    Raises:
        ValueError: the expression is invalid.
    """
    return flowfilter.parse(expr)


def read_flows(
    path: str | os.PathLike[str],
    *,
    decoded: bool = False,
    filter_expr: str | None = None,
    stats: CaptureStats | None = None,
    max_flow_bytes: int = MAX_FLOW_BYTES,
) -> Generator[Exchange | Skipped, None, None]:
    """Stream the flows of a ``.flow`` or HAR capture as exchanges.

    HTTP flows become :class:`Exchange` objects; TCP, UDP and DNS flows become
    :class:`Skipped` markers and are counted in ``stats``; WebSocket messages
    after a handshake are counted on the handshake's exchange. The file and the
    filter are checked when this is called; flows are read as the iterator is
    consumed.

    Args:
        path: the capture file.
        decoded: hand over bodies decoded (``Content-Encoding`` undone, then
            ``Content-Encoding`` and ``Content-Length`` removed), as if Envoy's
            decompressor ran first; otherwise bodies are as on the wire.
        filter_expr: keep only HTTP flows matching this mitmproxy filter
            expression (``~d example.com & ~m POST``).
        stats: counts to fill in while reading.
        max_flow_bytes: refuse a single flow or HAR entry larger than this.

    Raises:
        ValueError: ``filter_expr`` is not a valid filter expression.
        CaptureFormatError: the file is not a capture (raised at once).
        CaptureReadError: while iterating, after every flow before the damage:
            the capture is truncated or corrupt, or a flow has a format version
            the installed mitmproxy cannot read. ``.index`` is the first flow not
            read.
        CaptureError: the file cannot be opened.
    """
    flt = parse_filter(filter_expr) if filter_expr is not None else None
    fmt = sniff(path)
    target = stats if stats is not None else CaptureStats()
    target.path = str(path)
    target.format = fmt or "flow"
    return _read(Path(path), fmt, decoded, flt, target, max_flow_bytes)


def _read(
    path: Path,
    fmt: CaptureFormat | None,
    decoded: bool,
    flt: flowfilter.TFilter | None,
    stats: CaptureStats,
    max_flow_bytes: int,
) -> Generator[Exchange | Skipped, None, None]:
    if fmt is None:
        return  # an empty file: no flows
    try:
        fo = open(path, "rb")  # noqa: SIM115 - closed in finally (generator)
    except OSError as exc:
        raise CaptureError(f"cannot open capture {path}: {exc.strerror}") from exc
    try:
        if fmt == "flow":
            flows = _flow_file(fo, str(path), stats, max_flow_bytes)
        else:
            flows = _har_file(fo, str(path), stats, max_flow_bytes)
        for index, item, is_har in flows:
            stats.flows += 1
            out = _convert(index, item, decoded, flt, is_har, stats, str(path))
            if out is not None:
                yield out
    finally:
        fo.close()


def _convert(
    index: int,
    item: flow.Flow,
    decoded: bool,
    flt: flowfilter.TFilter | None,
    is_har: bool,
    stats: CaptureStats,
    path: str,
) -> Exchange | Skipped | None:
    if not isinstance(item, http.HTTPFlow):
        kind = _kind(item)
        stats.count_skip(kind)
        return Skipped(index, kind, item.id, f"{kind} flows are not replayed")
    try:
        if flt is not None and not flowfilter.match(flt, item):
            stats.filtered_out += 1
            return None
        exchange = to_exchange(item, index, decoded=decoded, har=is_har)
    except Exception as exc:
        # A flow that mitmproxy loaded but whose fields make no sense (a
        # damaged file can still parse): report it like any other damage.
        raise CaptureReadError(
            f"{path}: flow {index} is malformed ({_reason(exc)})",
            path=path,
            index=index,
            format_version=stats.format_version,
        ) from exc
    too_big = _over_limits(exchange)
    if too_big is not None:
        stats.count_skip("oversized")
        return Skipped(index, "oversized", item.id, too_big)
    stats.exchanges += 1
    stats.websocket_messages += exchange.websocket_messages
    if exchange.request_only:
        stats.request_only += 1
    return exchange


def _reason(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return f"{type(exc).__name__}: {exc}"


def _over_limits(exchange: Exchange) -> str | None:
    # A header map past the ABI's limits cannot reach a filter: Envoy's codec
    # rejects far smaller ones (60 KiB, 100 headers by default).
    maps: list[tuple[str, Headers | None]] = [
        ("request headers", exchange.request.headers)
    ]
    maps.append(("request trailers", exchange.request.trailers))
    if exchange.response is not None:
        maps.append(("response headers", exchange.response.headers))
        maps.append(("response trailers", exchange.response.trailers))
    for name, headers in maps:
        if headers is None:
            continue
        fields = headers.fields
        if len(fields) > MAX_PAIRS_COUNT:
            return f"{len(fields)} {name}, over the {MAX_PAIRS_COUNT}-pair limit"
        size = 4 + sum(10 + len(k) + len(v) for k, v in fields)
        if size > MAX_PAIRS_BYTES:
            return f"{name} of {size} bytes, over the {MAX_PAIRS_BYTES}-byte limit"
    return None


def _kind(item: flow.Flow) -> str:
    if isinstance(item, tcp.TCPFlow):
        return "tcp"
    if isinstance(item, udp.UDPFlow):
        return "udp"
    if isinstance(item, dns.DNSFlow):
        return "dns"
    return str(getattr(item, "type", type(item).__name__))


# --- .flow files -----------------------------------------------------------


class _Truncated(Exception):
    pass


class _TooLarge(Exception):
    pass


class _BoundedReader:
    """The file as tnetstring.load reads it, refusing reads past the end or limit.

    A damaged length prefix would otherwise make ``load`` allocate up to a
    terabyte before noticing the file is shorter.
    """

    def __init__(self, fo: BinaryIO, size: int, limit: int) -> None:
        self._fo = fo
        self.pos = 0
        self.size = size
        self.limit = limit

    def read(self, n: int) -> bytes:
        if n > self.size - self.pos:
            raise _Truncated(f"needs {n} bytes, {self.size - self.pos} left")
        if n > self.limit:
            raise _TooLarge(f"a flow of {n} bytes is over the {self.limit}-byte limit")
        data = self._fo.read(n)
        self.pos += len(data)
        if len(data) < n:
            raise _Truncated(f"needs {n} bytes, got {len(data)}")
        return data


def _version_text(raw: Any) -> str | None:
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, list | tuple) and all(isinstance(x, int) for x in raw):
        return ".".join(str(x) for x in raw[:2])
    return None


def _version_known(raw: Any) -> bool:
    if isinstance(raw, int):
        return raw == FLOW_FORMAT_VERSION or raw in compat.converters
    if isinstance(raw, list | tuple):
        return tuple(raw)[:2] in compat.converters
    return False


def _flow_file(
    fo: BinaryIO, path: str, stats: CaptureStats, limit: int
) -> Iterator[tuple[int, flow.Flow, bool]]:
    size = os.fstat(fo.fileno()).st_size
    reader = _BoundedReader(fo, size, limit)
    index = 0
    while reader.pos < size:
        start = reader.pos
        version: str | None = stats.format_version
        parsed = False
        try:
            state = tnetstring.load(cast(BinaryIO, reader))
            if not isinstance(state, dict):
                raise ValueError(f"a {type(state).__name__}, not a flow")
            raw = state.get(b"version", state.get("version"))
            if raw is None:
                raise ValueError("a record without a format version")
            parsed = True
            version = _version_text(raw) or repr(raw)
            if not _version_known(raw):
                raise _UnknownVersion(raw)
            item = flow.Flow.from_state(compat.migrate_flow(state))
        except _UnknownVersion as exc:
            newer = isinstance(exc.raw, int) and exc.raw > FLOW_FORMAT_VERSION
            hint = (
                "; it was written by a newer mitmproxy: update mitmproxy"
                if newer
                else ""
            )
            raise CaptureReadError(
                f"{path}: flow {index} (byte {start}) has flow format version "
                f"{version}, which mitmproxy {mitmproxy_version.VERSION} cannot read "
                f"(it reads versions up to {FLOW_FORMAT_VERSION}){hint}",
                path=path,
                index=index,
                format_version=version,
            ) from None
        except _Truncated as exc:
            raise CaptureReadError(
                f"{path} is truncated: flow {index} (from byte {start}) is cut "
                f"short at byte {size} ({exc}); {index} flows were read",
                path=path,
                index=index,
                format_version=version,
            ) from exc
        except RecursionError:
            # mitmproxy's tnetstring reader recurses once per level: a record
            # nested past the interpreter's limit is damage, not a crash.
            raise CaptureReadError(
                f"{path}: flow {index} (from byte {start}) is nested too deeply "
                f"(past Python's recursion limit of {sys.getrecursionlimit()}); "
                f"{index} flows were read",
                path=path,
                index=index,
                format_version=version,
            ) from None
        except Exception as exc:
            if index == 0 and not parsed and not isinstance(exc, _TooLarge):
                raise CaptureFormatError(
                    f"{path} is not a mitmproxy .flow capture: {exc}"
                ) from exc
            what = "too large" if isinstance(exc, _TooLarge) else "corrupt"
            raise CaptureReadError(
                f"{path}: flow {index} (from byte {start}) is {what}: {exc}; "
                f"{index} flows were read",
                path=path,
                index=index,
                format_version=version,
            ) from exc
        if stats.format_version is None:
            stats.format_version = version
        yield index, item, False
        index += 1


class _UnknownVersion(Exception):
    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        self.raw = raw


# --- HAR files -------------------------------------------------------------


def _har_file(
    fo: BinaryIO, path: str, stats: CaptureStats, limit: int
) -> Iterator[tuple[int, flow.Flow, bool]]:
    stream = jsonstream.JsonStream(fo, limit)
    index = 0
    entries = jsonstream.har_entries(stream, stats)
    while True:
        try:
            entry = next(entries)
        except StopIteration:
            return
        except jsonstream.NotHar:
            raise CaptureFormatError(
                f"{path} is JSON but not a HAR capture: it has no log.entries"
            ) from None
        except jsonstream.JsonError as exc:
            if exc.too_deep:
                where = f"entry {index}" if stream.entered else "the HAR document"
                raise CaptureReadError(
                    f"{path}: {where} is nested too deeply at character "
                    f"{exc.offset} ({exc}); {index} entries were read",
                    path=path,
                    index=index,
                    format_version=stats.format_version,
                ) from None
            if not stream.entered:
                raise CaptureFormatError(
                    f"{path} is not a HAR capture: {exc} (character {exc.offset})"
                ) from exc
            what = "truncated" if exc.truncated else "corrupt"
            raise CaptureReadError(
                f"{path} is {what}: entry {index} breaks at character {exc.offset} "
                f"({exc}); {index} entries were read",
                path=path,
                index=index,
                format_version=stats.format_version,
            ) from exc
        try:
            item = _har_flow(entry)
        except Exception as exc:
            raise CaptureReadError(
                f"{path}: HAR entry {index} is not a valid entry "
                f"({_reason(exc)}); {index} entries were read",
                path=path,
                index=index,
                format_version=stats.format_version,
            ) from exc
        yield index, item, True
        index += 1


def _har_flow(entry: Any) -> http.HTTPFlow:
    if not isinstance(entry, dict):
        raise TypeError(f"an entry is an object, not {type(entry).__name__}")
    item = har.request_to_flow(entry)
    _as_recorded(item, entry)
    # Browsers record requests that got no response with status 0.
    if item.response is not None and item.response.status_code == 0:
        reason = entry["response"].get("_error") or "no response (HAR status 0)"
        item.response = None
        item.error = flow.Error(str(reason), item.request.timestamp_end or 0.0)
    return item


def _as_recorded(item: http.HTTPFlow, entry: dict[str, Any]) -> None:
    """Keep the headers the HAR recorded, and the body encoded as they say.

    mitmproxy 12's HAR reader decodes both bodies at the end: it drops
    ``Content-Encoding`` and sets ``Content-Length``. mitmproxy 11 kept the
    recorded headers and encoded the body by them, which is what reached the
    proxy; wasmkit keeps that under both, so a HAR gives the same exchanges
    whichever mitmproxy reads it (``decoded=True`` gives the decoded view).
    A HAR holds the decoded text only, so a compressed body is the installed
    mitmproxy's encoding of it (12 compresses faster, into other bytes than
    11); its ``Content-Length``, if recorded, is then the length of that body,
    as Envoy's codec would count it.
    """
    request, response = item.request, item.response
    recorded = har.fix_headers(entry["request"].get("headers", []))
    if "content-encoding" in recorded and "content-encoding" not in request.headers:
        body = request.raw_content or b""
        request.headers = recorded
        request.content = body  # encoded by the recorded Content-Encoding
    if response is None:
        return
    recorded = har.fix_headers(entry["response"].get("headers", []))
    if response.headers.fields != recorded.fields:
        body = response.raw_content or b""
        response.headers = recorded
        response.raw_content = encoding.encode(
            body, recorded.get("content-encoding") or "identity"
        )
    raw = response.raw_content
    length = str(len(raw or b""))
    if (
        raw
        and "content-encoding" in response.headers
        and response.headers.get("content-length", length) != length
    ):
        response.headers["content-length"] = length


# --- flow -> exchange ------------------------------------------------------


def _s(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", "surrogateescape")


def _headers(raw: http.Headers | None) -> Headers | None:
    if raw is None:
        return None
    return Headers(raw.fields)


def _body(
    message: http.Message, headers: Headers, decoded: bool
) -> tuple[bytes, Headers]:
    raw = message.raw_content or b""
    if not decoded:
        return raw, headers
    encoding = message.headers.get("content-encoding", "").strip().lower()
    if not encoding or encoding == "identity":
        return raw, headers
    try:
        body = message.get_content(strict=True) or b""
    except ValueError:
        return raw, headers  # left encoded, with its Content-Encoding
    out = headers.copy()
    for name in ("content-encoding", "content-length"):
        if name in out:
            del out[name]
    return body, out


def _address(addr: Any) -> tuple[str | None, int | None]:
    if isinstance(addr, tuple | list) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return (
            str(host) if host else None,
            int(port) if isinstance(port, int) and port else None,
        )
    return None, None


def to_exchange(
    item: http.HTTPFlow, index: int, *, decoded: bool = False, har: bool = False
) -> Exchange:
    """Convert one mitmproxy HTTP flow into an :class:`Exchange`.

    Args:
        item: the flow.
        index: its position in the capture.
        decoded: decode bodies as :func:`read_flows` describes.
        har: the flow came from HAR (TLS is then inferred from the ``https``
            scheme, since HAR records no connection details).
    """
    req = item.request
    rd = req.data
    req_headers = Headers(rd.headers.fields)
    req_body, req_headers = _body(req, req_headers, decoded)
    request = Request(
        method=_s(rd.method),
        scheme=_s(rd.scheme),
        host=rd.host,
        port=rd.port,
        path=_s(rd.path),
        http_version=_s(rd.http_version),
        headers=req_headers,
        body=req_body,
        trailers=_headers(rd.trailers),
        authority=_s(rd.authority),
        timestamp_start=rd.timestamp_start,
        timestamp_end=rd.timestamp_end,
    )
    response: Response | None = None
    if item.response is not None:
        resp = item.response
        sd = resp.data
        resp_headers = Headers(sd.headers.fields)
        resp_body, resp_headers = _body(resp, resp_headers, decoded)
        response = Response(
            status=sd.status_code,
            reason=_s(sd.reason),
            http_version=_s(sd.http_version),
            headers=resp_headers,
            body=resp_body,
            trailers=_headers(sd.trailers),
            timestamp_start=sd.timestamp_start,
            timestamp_end=sd.timestamp_end,
        )
    client = item.client_conn
    server = item.server_conn
    client_address, client_port = _address(client.peername)
    listen_address, listen_port = _address(client.sockname)
    server_address, server_port = _address(server.peername or server.address)
    if har:
        tls = request.scheme == "https"
        tls_version = None
        sni = None
        if not client_port:  # mitmproxy's HAR reader makes up 127.0.0.1:0
            client_address = None
    else:
        tls = client.tls_established
        tls_version = client.tls_version
        sni = client.sni
    error = item.error.msg if item.error is not None else None
    if response is not None and response.timestamp_end is not None:
        end: float | None = response.timestamp_end
    elif item.error is not None:
        end = item.error.timestamp
    else:
        end = request.timestamp_end
    return Exchange(
        index=index,
        request=request,
        response=response,
        error=error,
        id=item.id,
        client_address=client_address,
        client_port=client_port,
        listen_address=listen_address,
        listen_port=listen_port,
        server_address=server_address,
        server_port=server_port,
        tls=tls,
        tls_version=tls_version,
        sni=sni,
        alpn=_s(client.alpn) or None,
        mtls=bool(client.certificate_list),
        timestamp_start=request.timestamp_start,
        timestamp_end=end,
        decoded=decoded,
        websocket_messages=len(item.websocket.messages) if item.websocket else 0,
    )


# --- exports: the traffic after a filter, written by mitmproxy.io ------------

AfterFilter = tuple[Exchange, HttpMessage | None, HttpMessage | None, str | None]
"""One exchange after a filter: ``(exchange, request, response, error)``.

``request`` is the request as the filter forwarded it upstream (or left it when
it held it), ``response`` the response the client received (a local reply
included), ``error`` the filter's failure; ``None`` when there is none.
"""


def _pseudo(message: HttpMessage) -> tuple[dict[bytes, bytes], HeaderPairs]:
    head: dict[bytes, bytes] = {}
    rest: HeaderPairs = []
    for key, value in message.headers:
        if key.startswith(b":"):
            head.setdefault(key, value)
        else:
            rest.append((key, value))
    return head, rest


def _host_port(authority: str, scheme: str) -> tuple[str, int]:
    default = _PORTS.get(scheme.lower(), 80)
    if authority.startswith("["):  # [v6]:port
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else default
    host, sep, port = authority.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return authority, default


_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _after_request(exchange: Exchange, message: HttpMessage | None) -> http.Request:
    orig = exchange.request
    if message is None:  # the filter never saw it (cannot happen in replay)
        message = orig.to_message()
    head, fields = _pseudo(message)
    method = head.get(b":method", orig.method.encode())
    scheme = head.get(b":scheme", (orig.scheme or "http").encode())
    path = head.get(b":path", orig.path.encode("utf-8", "surrogateescape"))
    authority_raw = head.get(b":authority")
    authority = _s(authority_raw) if authority_raw is not None else ""
    host, port = orig.host, orig.port
    if authority and authority != orig.pretty_authority:
        host, port = _host_port(authority, _s(scheme))
    h2 = bool(orig.authority) or not orig.http_version.startswith("HTTP/1")
    if authority and not h2:
        # Envoy's HTTP/1 codec sends :authority upstream as Host.
        fields = [(b"host", authority.encode("utf-8", "surrogateescape")), *fields]
    start = orig.timestamp_start or exchange.timestamp_start or 0.0
    return http.Request(
        host=host,
        port=port,
        method=method,
        scheme=scheme,
        authority=authority.encode("utf-8", "surrogateescape") if h2 else b"",
        path=path,
        http_version=(orig.http_version or "HTTP/1.1").encode(),
        headers=http.Headers(tuple(fields)),
        content=message.body,
        trailers=None if message.trailers is None else tuple(message.trailers),
        timestamp_start=start,
        timestamp_end=orig.timestamp_end or start,
    )


def _after_response(
    exchange: Exchange, message: HttpMessage, request: http.Request
) -> http.Response:
    from http import HTTPStatus

    head, fields = _pseudo(message)
    try:
        status = int(head.get(b":status", b"0"))
    except ValueError:
        status = 0
    orig = exchange.response
    if orig is not None and orig.status == status:
        reason = orig.reason
    else:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
    version = orig.http_version if orig is not None else request.http_version
    start = (
        orig.timestamp_start
        if orig is not None and orig.timestamp_start is not None
        else request.timestamp_end or request.timestamp_start
    )
    end = orig.timestamp_end if orig is not None else None
    return http.Response(
        http_version=(version or "HTTP/1.1").encode(),
        status_code=status,
        reason=reason.encode("utf-8", "surrogateescape"),
        headers=http.Headers(tuple(fields)),
        content=message.body,
        trailers=None if message.trailers is None else tuple(message.trailers),
        timestamp_start=start,
        timestamp_end=end if end is not None else start,
    )


def to_flow(
    exchange: Exchange,
    request: HttpMessage | None,
    response: HttpMessage | None,
    error: str | None = None,
    *,
    comment: str = "",
) -> http.HTTPFlow:
    """A mitmproxy HTTP flow of ``exchange`` as it left a filter.

    Args:
        exchange: the captured exchange: connections and timestamps come from it.
        request: the request as forwarded upstream (or as the filter left it).
        response: the response the client received, ``None`` if none.
        error: the flow's error text (the filter's failure), if any.
        comment: the flow's comment, shown by mitmweb.
    """
    from mitmproxy import connection

    req = _after_request(exchange, request)
    client_addr = (exchange.client_address or "127.0.0.1", exchange.client_port or 0)
    listen = (exchange.listen_address or "0.0.0.0", exchange.listen_port or 0)
    client = connection.Client(
        peername=client_addr,
        sockname=listen,
        timestamp_start=exchange.timestamp_start or req.timestamp_start,
    )
    if exchange.tls:
        client.timestamp_tls_setup = client.timestamp_start
        client.sni = exchange.sni
        if exchange.tls_version is not None:
            client.tls_version = cast(Any, exchange.tls_version)
    if exchange.alpn:
        client.alpn = exchange.alpn.encode()
    target = (req.host, req.port)
    server = connection.Server(address=target)
    if exchange.server_address and exchange.server_port:
        server.peername = (exchange.server_address, exchange.server_port)
    item = http.HTTPFlow(client, server)
    item.request = req
    if response is not None:
        item.response = _after_response(exchange, response, req)
    if error is not None:
        stamp = exchange.timestamp_end or req.timestamp_end or req.timestamp_start
        item.error = flow.Error(error, stamp)
    item.comment = comment
    return item


def write_flows(
    path: str | os.PathLike[str], items: Iterable[AfterFilter], *, comment: str = ""
) -> int:
    """Write exchanges after a filter as a mitmproxy ``.flow`` file.

    Flows are written one at a time with ``mitmproxy.io.FlowWriter`` to a
    temporary file beside ``path``, renamed into place once complete; the file
    opens in mitmweb (``mitmweb -r``) and reads back with ``load_capture``.

    Args:
        path: the file to write.
        items: the exchanges after the filter.
        comment: every flow's comment (shown by mitmweb).

    Returns:
        The number of flows written.

    Raises:
        OSError: the file cannot be written; ``filename`` is ``path``.
    """
    count = 0
    with _atomic.AtomicFile(path, "wb") as fo:
        writer = mitmio.FlowWriter(fo)  # type: ignore[no-untyped-call]
        for exchange, request, response, error in items:
            writer.add(to_flow(exchange, request, response, error, comment=comment))
            count += 1
    return count


def write_har(
    path: str | os.PathLike[str], items: Iterable[AfterFilter], *, comment: str = ""
) -> int:
    """Write exchanges after a filter as HAR, with mitmproxy's own HAR export.

    Entries are made by ``mitmproxy.addons.savehar.SaveHar``. A flow with both
    a response and an error (a filter that failed after answering) keeps its
    error text as the response's ``_error``, as SaveHar does for error flows.
    ``comment`` becomes the document's ``log.comment``. Written whole or not
    at all (a temporary file renamed into place).

    Returns:
        The number of entries written.

    Raises:
        OSError: the file cannot be written; ``filename`` is ``path``.
    """
    import json

    from mitmproxy.addons.savehar import SaveHar

    flows = [to_flow(*item) for item in items]
    har_doc = SaveHar().make_har(flows)
    for entry, item in zip(har_doc["log"]["entries"], flows, strict=True):
        if item.error is not None and item.response is not None:
            entry["response"]["_error"] = item.error.msg
    if comment:
        har_doc["log"]["comment"] = comment
    _atomic.write_text(path, json.dumps(har_doc, indent=1))
    return len(flows)


# --- matching exchanges with a filter expression ------------------------------

FlowMatcher = Callable[[Exchange | AfterFilter | http.HTTPFlow], bool]
"""A compiled filter expression over exchanges (see :func:`compile_filter`)."""


def compile_filter(expr: str) -> FlowMatcher:
    """Compile a mitmproxy filter expression into a predicate over exchanges.

    The predicate takes an :class:`Exchange` (matched as captured), an
    :data:`AfterFilter` tuple (matched as it left a filter: ``~c 403`` finds
    the local replies) or a mitmproxy flow made by :func:`to_flow` (convert
    once, match many times). The same expressions as ``load_capture``'s
    ``filter_expr``: ``~m POST``, ``~d api.example``, ``~c 404``, ``~h x-token``,
    ``!~m GET``. Header names are matched as filters see them, in lower case.

    Raises:
        ValueError: the expression is invalid (the message names it).
    """
    flt = parse_filter(expr)

    def match(item: Exchange | AfterFilter | http.HTTPFlow) -> bool:
        if isinstance(item, Exchange):
            item = to_flow(
                item, item.to_request_message(), item.to_response_message(), item.error
            )
        elif isinstance(item, tuple):
            item = to_flow(*item)
        return bool(flowfilter.match(flt, item))

    return match

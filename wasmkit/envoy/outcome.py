"""What Envoy did with one exchange, as the engine's :class:`StreamResult`.

Built from the requests the local upstream received, what the client got and
Envoy's stderr lines of the exchange (see :mod:`wasmkit.envoy.runner` for
what each field holds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from wasmkit.abi.constants import LogLevel
from wasmkit.envoy import _http1
from wasmkit.envoy._http1 import WireMessage
from wasmkit.envoy.collector import EnvoyLine
from wasmkit.envoy.sender import ClientOutcome
from wasmkit.errors import FilterTrapError
from wasmkit.host.callouts import Callout
from wasmkit.host.context import LogRecord
from wasmkit.host.message import HttpMessage, LocalReply
from wasmkit.host.stream import StreamResult

_DETAILS = "Preparing local reply with details "
_FAILED = re.compile(r"Function: (\w+) failed")
_MARKER_DETAILS = "direct_response"
_ROUTER_RESET = "local reply with details upstream_reset_before_response_started"
# What Envoy puts around a filter's local reply; the rest are the filter's.
_REPLY_OWN = {b":status", b"content-length", b"date", b"server", b"connection"}


def filter_logs(lines: Iterable[EnvoyLine]) -> list[LogRecord]:
    """The filter's ``wasm log`` lines among ``lines`` as log records."""
    out = []
    for line in lines:
        if line.logger != "wasm" or line.level is None:
            continue
        if not line.message.startswith("wasm log"):
            continue
        # "wasm log <plugin> <root id> <vm id>: message" (start-up lines
        # name fewer of them).
        _, _, text = line.message.partition(": ")
        out.append(LogRecord(line.level, text, 0, "proxy_log", line.time_ns))
    return out


def reply_details(lines: Iterable[EnvoyLine]) -> str:
    """The details of the first local reply Envoy prepared in ``lines``.

    The marker listener's direct response (``config.MARKER_LISTENER``, sent
    after the previous exchange) may log its reply after its marker line,
    inside this exchange's window: it is skipped, since the filter listener
    never answers that way.
    """
    for ln in lines:
        if ln.logger == "http" and _DETAILS in ln.message:
            found = ln.message.split(_DETAILS, 1)[1].strip()
            if found != _MARKER_DETAILS:
                return found
    return ""


def stream_result(
    exchange: Any,
    arrived: list[WireMessage],
    outcome: ClientOutcome,
    lines: list[EnvoyLine],
    callouts: list[Callout],
    *,
    fail_open: bool,
) -> StreamResult:
    """The :class:`StreamResult` of one exchange from what Envoy did.

    Args:
        exchange: the captured exchange.
        arrived: the requests the upstream received for it.
        outcome: what the client got.
        lines: Envoy's stderr lines while the exchange ran.
        callouts: the callouts it made.
        fail_open: the filter's failure policy.
    """
    request_after: HttpMessage | None = None
    if arrived:
        wire = arrived[0]
        scheme = wire.get(b"x-forwarded-proto") or b"http"
        request_after = _http1.request_message(wire, scheme)
    response_after = (
        _http1.response_message(outcome.response) if outcome.response else None
    )
    response_before = exchange.to_response_message() if arrived else None
    details = reply_details(lines)
    error = _failure(lines, fail_open)
    if error is None and not arrived and details.startswith("wasm_fail_stream"):
        # The VM failed on an earlier flow and stays failed (fail-closed).
        error = FilterTrapError(
            "Envoy (fail-closed): the plugin failed earlier; Envoy answers "
            "503 (wasm_fail_stream) without calling it",
            kind="trap",
            callback="",
            context_id=0,
            trap_code=None,
        )
    # The router's own 503 for an upstream that refused the connection (or
    # reset it): the filter forwarded the request, nothing arrived.
    router_reset = any(
        ln.logger == "http" and _ROUTER_RESET in ln.message for ln in lines
    )
    local_reply = None
    if (
        not arrived
        and response_after is not None
        and error is None
        and not router_reset
    ):
        local_reply = LocalReply(
            response_after.status or 0,
            [
                (k, v)
                for k, v in response_after.headers
                if k not in _REPLY_OWN
                and not (k == b"content-type" and v == b"text/plain")
            ],
            response_after.body,
            details,
        )
    notes = []
    if outcome.error and response_after is None:
        notes.append(f"the client got no response: {outcome.error}")
    if details and local_reply is None:
        notes.append(f"Envoy answered itself: {details}")
    client_request = exchange.to_request_message()
    return StreamResult(
        request_before=client_request,
        request_after=request_after,
        request_forwarded=bool(arrived) or router_reset,
        response_before=response_before,
        response_after=response_after,
        local_reply=local_reply,
        logs=filter_logs(lines),
        trace=[],
        error=error,
        reset=response_after is None and error is None,
        notes=notes,
        callouts=list(callouts),
        # The same fields wasmkit's connection manager fills: what the
        # upstream received and what the client got, as they crossed the wire.
        client_request=client_request,
        upstream_request=request_after,
        client_response=response_after,
    )


_NOT_FAILURES = ("wasm log", "Attempted call to restricted")
# The filter's own lines, and cpp-host's stubs for a restricted capability
# (allowed_capabilities): the call fails, the filter goes on.


def _failure(lines: list[EnvoyLine], fail_open: bool) -> FilterTrapError | None:
    # V8 reports a failed callback on the wasm logger: "Function:
    # proxy_on_request_headers failed: Uncaught RuntimeError: unreachable",
    # followed by the in-VM backtrace when Envoy has one.
    for line in lines:
        if line.logger != "wasm" or line.level is None:
            continue
        if line.level < LogLevel.ERROR or line.message.startswith(_NOT_FAILURES):
            continue
        found = _FAILED.search(line.message)
        backtrace = [
            ln.strip()
            for ln in line.message.splitlines()[1:]
            if ln.strip() and not ln.startswith("Proxy-Wasm plugin in-VM backtrace")
        ]
        policy = "fail-open" if fail_open else "fail-closed"
        return FilterTrapError(
            f"Envoy ({policy}): {line.message.splitlines()[0]}",
            kind="trap",
            callback=found.group(1) if found else "",
            context_id=0,
            trap_code=None,
            wasm_backtrace=backtrace,
        )
    return None

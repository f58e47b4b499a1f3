"""Answer a filter's HTTP callouts from the captured traffic itself."""

from __future__ import annotations

from collections.abc import Iterable

from wasmkit.host.callouts import Callout, CalloutReply
from wasmkit.replay.engine import ExchangeLike


class CaptureResponder:
    """Answers callouts with the recorded responses of matching flows.

    A callout matches a captured request with the same ``:authority`` and
    ``:path`` (query included), else the same path on any authority; the
    latest such flow with a response answers. Callouts that match nothing get
    no answer (they time out, as a call to a missing service would).

    Args:
        exchanges: the captured exchanges to answer from.
    """

    def __init__(self, exchanges: Iterable[ExchangeLike]) -> None:
        self._by_target: dict[tuple[bytes, bytes], ExchangeLike] = {}
        self._by_path: dict[bytes, ExchangeLike] = {}
        for exchange in exchanges:
            if exchange.to_response_message() is None:
                continue
            request = exchange.to_request_message()
            path = request.get(b":path") or b"/"
            authority = request.get(b":authority") or b""
            self._by_target[(authority, path)] = exchange
            self._by_path[path] = exchange

    def __call__(self, call: Callout) -> CalloutReply | None:
        """The recorded response for ``call``, or ``None``."""
        path = call.path.encode("utf-8", "surrogateescape")
        authority = call.authority.encode("utf-8", "surrogateescape")
        exchange = self._by_target.get((authority, path)) or self._by_path.get(path)
        if exchange is None:
            return None
        message = exchange.to_response_message()
        return None if message is None else CalloutReply(message)

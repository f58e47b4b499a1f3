"""Stream info and connection of a driver context, settable before a call."""

from __future__ import annotations

import dataclasses
from typing import Any

from wasmkit.host.context import Context
from wasmkit.host.message import Connection
from wasmkit.host.plugin import FilterVm
from wasmkit.host.properties import StreamInfo, parse_flags


class StreamInfoAccess:
    """Envoy's stream info and connection of an HTTP or TCP context.

    The filter reads them as properties: ``request.time``,
    ``request.duration``, ``response.code_details``, ``response.flags``
    (:class:`~wasmkit.host.properties.StreamInfo`), ``source.*``,
    ``destination.*``, ``connection.*``, ``upstream.*``
    (:class:`~wasmkit.host.message.Connection`). Set them before a call; the
    next callback sees the new values.
    """

    ctx: Context
    vm: FilterVm

    @property
    def stream_info(self) -> StreamInfo:
        """Envoy's stream info of this context, as the properties read it."""
        return self.vm.stream_info.get(self.ctx.id) or StreamInfo()

    @stream_info.setter
    def stream_info(self, value: StreamInfo) -> None:
        self.vm.stream_info[self.ctx.id] = value

    def set_stream_info(
        self,
        *,
        start_ns: int | None = None,
        duration_ms: float | None = None,
        complete: bool | None = None,
        code_details: str | None = None,
        response_flags: int | str | None = None,
        backend_latency_ms: float | None = None,
    ) -> StreamInfo:
        """Set some fields of :attr:`stream_info` (the others are kept).

        Args:
            start_ns: ``request.time`` (Unix ns).
            duration_ms: ``request.duration`` once complete (ms).
            complete: whether the request is complete (Envoy's
                ``requestComplete()``): ``request.duration`` exists only
                then, and an HTTP stream's access log calls ``proxy_on_log``
                only then. A TCP connection is never complete in Envoy.
            code_details: ``response.code_details``.
            response_flags: ``response.flags``: bits, or Envoy's short names
                (``"UF"``, ``"UT,UR"``).
            backend_latency_ms: ``response.backend_latency`` (ms).

        Raises:
            ValueError: an unknown response flag name.
        """
        changes: dict[str, Any] = {}
        if start_ns is not None:
            changes["start_ns"] = int(start_ns)
        if duration_ms is not None:
            changes["duration_ns"] = round(duration_ms * 1_000_000)
        if complete is not None:
            changes["complete"] = complete
        if code_details is not None:
            changes["code_details"] = code_details
        if response_flags is not None:
            changes["response_flags"] = parse_flags(response_flags)
        if backend_latency_ms is not None:
            changes["backend_latency_ns"] = round(backend_latency_ms * 1_000_000)
        info = dataclasses.replace(self.stream_info, **changes)
        self.stream_info = info
        return info

    @property
    def connection(self) -> Connection:
        """The downstream connection (and its upstream) the filter reads."""
        conn = self.ctx.connection
        return conn if conn is not None else Connection(id=self.ctx.id)

    @connection.setter
    def connection(self, value: Connection) -> None:
        if not isinstance(value, Connection):
            raise TypeError(
                f"connection takes a wasmkit Connection, not {type(value).__name__}"
            )
        self.ctx.connection = value

    def set_connection(self, **fields: Any) -> Connection:
        """Set some fields of :attr:`connection` (the others are kept).

        The fields of :class:`~wasmkit.host.message.Connection`:
        ``source_address``, ``source_port``, ``tls_version``, ``sni``,
        ``mtls``, ``id`` ...

        Raises:
            TypeError: a field :class:`~wasmkit.host.message.Connection` has not.
        """
        names = {f.name for f in dataclasses.fields(Connection)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise TypeError(
                f"set_connection: no connection field {unknown[0]!r} "
                f"(known: {', '.join(sorted(names))})"
            )
        conn = dataclasses.replace(self.connection, **fields)
        self.ctx.connection = conn
        return conn

"""gRPC callouts: what the filter asked for and how the host answers.

A filter opens unary calls (``proxy_grpc_call``) and streams
(``proxy_grpc_stream``) to an upstream. A *gRPC responder* stands in for the
servers: a Python callable that gets a :class:`GrpcRequest` for each message the
filter sends (and for a stream's half-close) and returns a :class:`GrpcReply`
(messages, status, metadata, latency), the bytes of one message, a dict as in
:func:`grpc_table_responder`, or ``None`` for no answer (a unary call then runs
into its timeout); or a table built with :func:`grpc_table_responder`.

Answers reach the root context that made the call, on the virtual clock, the
way Envoy delivers them:

* Unary call: on success ``proxy_on_grpc_receive`` with the response message
  (buffer 5) and nothing else; on failure only ``proxy_on_grpc_close`` with the
  status, whose message ``proxy_get_status`` gives. Envoy's unary client has no
  metadata callbacks and no close after a success; profile ``spec`` delivers
  the full stream sequence below instead. A timeout closes with
  ``DEADLINE_EXCEEDED`` and "upstream request timeout" (Envoy answered
  ``UNAVAILABLE`` before its 2026 router change, envoyproxy/envoy#44479).
* Stream: ``proxy_on_grpc_receive_initial_metadata`` (map 4) once before the
  first message, ``proxy_on_grpc_receive`` per message, and at the end
  ``proxy_on_grpc_receive_trailing_metadata`` (map 5) and ``proxy_on_grpc_close``.

The upstream is a cluster name or a serialized ``GrpcService``; Envoy answers
``PARSE_FAILURE`` when it is neither (a name no cluster has). Tokens follow
cpp-host's classes: calls are 1 (mod 4), streams 2 (mod 4); HTTP callouts use
0 (mod 4). The calls themselves are run by
:class:`wasmkit.host.grpc_events.GrpcCallouts`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wasmkit.host.message import HeaderPairs, normalize_headers


class GrpcStatus(enum.IntEnum):
    """gRPC status codes, as ``proxy_on_grpc_close`` reports them."""

    OK = 0  # success
    CANCELLED = 1  # the caller cancelled
    UNKNOWN = 2  # unknown error, or no grpc-status at all
    INVALID_ARGUMENT = 3  # the request is wrong
    DEADLINE_EXCEEDED = 4  # the timeout expired
    NOT_FOUND = 5  # no such entity
    ALREADY_EXISTS = 6  # the entity exists already
    PERMISSION_DENIED = 7  # not allowed
    RESOURCE_EXHAUSTED = 8  # quota, rate limit, size
    FAILED_PRECONDITION = 9  # the system is not in the needed state
    ABORTED = 10  # concurrency conflict
    OUT_OF_RANGE = 11  # past the valid range
    UNIMPLEMENTED = 12  # the method does not exist
    INTERNAL = 13  # server bug; Envoy: a unary OK without a message
    UNAVAILABLE = 14  # try again later
    DATA_LOSS = 15  # unrecoverable data loss
    UNAUTHENTICATED = 16  # no valid credentials


TIMEOUT_MESSAGE = "upstream request timeout"
"""The status message of a call whose timeout expired (Envoy's router text)."""

Kind = Literal["call", "stream"]
"""A unary call or a stream."""


@dataclass(frozen=True, slots=True)
class GrpcRequest:
    """What a gRPC responder is asked: one message the filter sent, or a half-close."""

    token: int
    """The call's or stream's token."""
    kind: Kind
    """``call`` (unary) or ``stream``."""
    cluster: str
    """The upstream: an Envoy cluster name (or a Google gRPC target URI)."""
    service: str
    """The gRPC service, e.g. ``envoy.service.auth.v3.Authorization``."""
    method: str
    """The method, e.g. ``Check``."""
    metadata: HeaderPairs
    """The filter's initial metadata, names lower-cased."""
    message: bytes | None
    """The message (serialized protobuf); ``None`` when a stream was half-closed
    with ``proxy_grpc_close`` without a message."""
    end_stream: bool
    """The filter sends nothing more (always true for a unary call)."""
    index: int
    """How many messages the filter sent before this one on the stream."""

    @property
    def path(self) -> str:
        """``/service/method``."""
        return f"/{self.service}/{self.method}"


@dataclass(frozen=True, slots=True)
class GrpcReply:
    """A gRPC responder's answer: messages, then optionally the end of the call.

    Strings are accepted for messages and metadata (encoded as UTF-8);
    metadata names are lower-cased, as Envoy stores them.
    """

    messages: tuple[bytes, ...] = ()
    """Response messages (serialized protobufs), delivered one by one."""
    status: int | None = None
    """The gRPC status that ends the call or stream; ``None`` keeps a stream
    open (a unary call treats it as ``OK``)."""
    status_message: str = ""
    """The status message (``grpc-message``), read with ``proxy_get_status``."""
    initial_metadata: Sequence[tuple[bytes, bytes]] = ()
    """Response initial metadata (added after ``:status`` and ``content-type``)."""
    trailing_metadata: Sequence[tuple[bytes, bytes]] = ()
    """Response trailing metadata (added after ``grpc-status``, ``grpc-message``)."""
    latency_ms: float = 0.0
    """Virtual time until the answer arrives (ms); on a stream no answer
    overtakes one given before it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(map(_message, self.messages)))
        for name in ("initial_metadata", "trailing_metadata"):
            object.__setattr__(self, name, _metadata(getattr(self, name)))


GrpcAnswer = GrpcReply | bytes | str | Mapping[str, Any] | None
"""What a gRPC responder may return (see :func:`as_reply`)."""

GrpcResponder = Callable[[GrpcRequest], GrpcAnswer]
"""A function answering the filter's gRPC messages."""

_REPLY_KEYS = frozenset(
    {
        "messages",
        "message",
        "status",
        "status_message",
        "initial_metadata",
        "trailing_metadata",
        "latency_ms",
    }
)


def _message(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _metadata(value: Any) -> tuple[tuple[bytes, bytes], ...]:
    if value is None:
        return ()
    items: Iterable[Any] = value.items() if isinstance(value, Mapping) else value
    return tuple(normalize_headers((k, v) for k, v in items))


def as_reply(answer: GrpcAnswer) -> GrpcReply | None:
    """A responder's answer as a :class:`GrpcReply`.

    Bytes or a string are one message; a dict has the keys ``messages`` (a
    list), ``message`` (one more), ``status``, ``status_message``,
    ``initial_metadata``, ``trailing_metadata`` (dicts or pair lists) and
    ``latency_ms``; messages that are neither bytes nor strings become JSON.

    Raises:
        ValueError: a dict has a key not listed above.
    """
    if answer is None or isinstance(answer, GrpcReply):
        return answer
    if isinstance(answer, bytes | str):
        return GrpcReply((_message(answer),))
    unknown = set(answer) - _REPLY_KEYS
    if unknown:
        raise ValueError(
            f"unknown gRPC reply key(s) {sorted(unknown)}; use {sorted(_REPLY_KEYS)}"
        )
    messages = list(answer.get("messages", ()))
    if "message" in answer:
        messages.append(answer["message"])
    status = answer.get("status")
    return GrpcReply(
        tuple(messages),
        None if status is None else int(status),
        str(answer.get("status_message", "")),
        answer.get("initial_metadata") or (),
        answer.get("trailing_metadata") or (),
        float(answer.get("latency_ms", 0)),
    )


@dataclass(slots=True)
class GrpcTableResponder:
    """Answers from a table keyed by ``cluster`` or ``cluster service/method``.

    The more specific key wins; a ``None`` entry names a cluster that never
    answers. A stream gets the entry's reply for each message, and when the
    filter half-closes it, the entry's status (``OK`` if it has none).
    """

    entries: dict[str, GrpcReply | None] = field(default_factory=dict)

    @property
    def clusters(self) -> set[str]:
        """The cluster names the table knows."""
        return {key.split(" ", 1)[0] for key in self.entries}

    def __call__(self, request: GrpcRequest) -> GrpcReply | None:
        """The table's answer to ``request``, or ``None`` (no answer)."""
        for key in (
            f"{request.cluster} {request.service}/{request.method}",
            request.cluster,
        ):
            if key in self.entries:
                reply = self.entries[key]
                break
        else:
            return None
        if reply is None or request.message is not None:
            return reply
        return GrpcReply(
            status=GrpcStatus.OK if reply.status is None else reply.status,
            status_message=reply.status_message,
            trailing_metadata=reply.trailing_metadata,
            latency_ms=reply.latency_ms,
        )


def grpc_table_responder(table: Mapping[str, GrpcAnswer]) -> GrpcTableResponder:
    """A gRPC responder from a table keyed by ``cluster`` or ``cluster service/method``.

    Values are as a responder returns them (see :func:`as_reply`), e.g.
    ``{"grpc_auth": {"message": b"...", "status": 0}}``.

    Raises:
        ValueError: a value is a dict with an unknown key.
    """
    return GrpcTableResponder({key: as_reply(value) for key, value in table.items()})


@dataclass(slots=True)
class GrpcCall:
    """One ``proxy_grpc_call`` or ``proxy_grpc_stream`` the filter made."""

    token: int
    """The token the filter got back (1 mod 4: call, 2 mod 4: stream)."""
    kind: Kind
    """``call`` (unary) or ``stream``."""
    context_id: int
    """The context that made the call."""
    root_id: int
    """The root context answers are delivered to."""
    cluster: str
    """The upstream cluster (or Google gRPC target URI)."""
    service: str
    """The gRPC service."""
    method: str
    """The gRPC method."""
    metadata: HeaderPairs
    """The filter's initial metadata."""
    timeout_ms: int
    """Timeout the filter gave (0: none; streams have none)."""
    sent_ns: int
    """Virtual time of the call (ns)."""
    sent: list[bytes] = field(default_factory=list)
    """Messages the filter sent."""
    received: list[bytes] = field(default_factory=list)
    """Messages delivered to the filter."""
    status: int | None = None
    """The final gRPC status, once there is one."""
    status_message: str = ""
    """The final status message."""
    outcome: str = "pending"
    """``pending``, ``ok``, ``error`` (a non-OK status), ``timeout`` or
    ``cancelled`` (by the filter)."""
    local_closed: bool = False
    """The filter half-closed the stream."""
    remote_closed: bool = False
    """The server ended the call or stream."""
    initial_delivered: bool = False
    """Initial metadata was delivered (streams)."""
    closed_ns: int | None = None
    """Virtual time the call ended (ns)."""

    @property
    def path(self) -> str:
        """``/service/method``."""
        return f"/{self.service}/{self.method}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "token": self.token,
            "kind": self.kind,
            "context_id": self.context_id,
            "cluster": self.cluster,
            "service": self.service,
            "method": self.method,
            "timeout_ms": self.timeout_ms,
            "sent": len(self.sent),
            "received": len(self.received),
            "status": self.status,
            "status_message": self.status_message,
            "outcome": self.outcome,
            "latency_ms": None
            if self.closed_ns is None
            else (self.closed_ns - self.sent_ns) / 1e6,
        }


# --- the upstream argument: a cluster name or a serialized GrpcService ---


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return None


def _fields(data: bytes) -> list[tuple[int, int, bytes]] | None:
    # Protobuf wire format: (field number, wire type, payload); None if invalid.
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos < len(data):
        key = _varint(data, pos)
        if key is None:
            return None
        tag, pos = key
        number, wire = tag >> 3, tag & 7
        if not 0 < number < 1 << 29:
            return None
        start = pos
        if wire == 0:
            end = _varint(data, pos)
            if end is None:
                return None
            pos = end[1]
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length = _varint(data, pos)
            if length is None:
                return None
            start = length[1]
            pos = start + length[0]
        else:
            return None  # groups and undefined wire types
        if pos > len(data):
            return None
        out.append((number, wire, data[start:pos]))
    return out


def parse_grpc_service(raw: bytes) -> tuple[str, str] | None:
    """Read a serialized ``envoy.config.core.v3.GrpcService`` the way Envoy tries to.

    Returns:
        ``None`` when the bytes are not such a message (Envoy then takes them
        as a cluster name); else ``("envoy", cluster_name)``,
        ``("google", target_uri)`` or ``("", "")`` when it names no target.
    """
    top = _fields(raw)
    if top is None:
        return None
    target = ("", "")
    for number, wire, payload in top:
        if number not in (1, 2, 3, 5):
            continue  # other fields are not checked; unknown ones are kept
        if wire != 2:
            return None
        if number in (3, 5):
            continue
        inner = _fields(payload)
        if inner is None:
            return None
        name = b""
        for inner_number, inner_wire, value in inner:
            if inner_number == 1:
                if inner_wire != 2:
                    return None
                name = value
        try:
            text = name.decode()
        except UnicodeDecodeError:
            return None  # proto3 strings must be UTF-8
        target = ("envoy" if number == 1 else "google", text)
    return target

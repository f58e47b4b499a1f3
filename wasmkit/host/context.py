"""Context state: root (plugin), HTTP stream and TCP contexts, plus records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from wasmkit.abi.constants import LogLevel, PeerType, StreamType
from wasmkit.host.buffers import Chunk, HeldBody, joined, readable
from wasmkit.host.message import Connection, HeaderPairs, HttpMessage, LocalReply

if TYPE_CHECKING:
    from wasmkit.host.plugin import Plugin


@dataclass(slots=True)
class LogRecord:
    """One log line from the filter: ``proxy_log`` or a write to stdout/stderr."""

    level: LogLevel
    """Severity."""
    message: str
    """The text, decoded as UTF-8 with replacement."""
    context_id: int
    """Context the filter was running for (0: the VM itself)."""
    source: str = "proxy_log"
    """``proxy_log``, ``stdout``, ``stderr`` or ``host``."""
    time_ns: int = 0
    """Virtual time of the record (ns since the epoch)."""
    callback: str = ""
    """The callback the filter was running (``proxy_on_response_body``...);
    empty outside one and on Envoy's side."""

    def to_json(self) -> dict[str, Any]:
        """``{"level", "message"}`` as in run records, plus the context id."""
        return {
            "level": self.level.label,
            "message": self.message,
            "context_id": self.context_id,
        }


@dataclass(slots=True)
class TraceEvent:
    """One crossing between host and guest."""

    kind: Literal["callback", "hostcall", "host"]
    """``callback`` (host → guest export), ``hostcall`` (guest → host import)
    or ``host`` (a change Envoy's connection manager or router made around
    the filter: ``name`` says which, ``args["change"]`` what)."""
    name: str
    """Export or import name, e.g. ``proxy_on_request_headers``."""
    context_id: int
    """Context in effect."""
    args: dict[str, Any]
    """Arguments, decoded (enum names, strings) where the host understood them."""
    result: Any
    """Return value (callbacks) or status name (hostcalls)."""
    duration_ns: int
    """Wall time spent, nested calls included (ns)."""
    depth: int = 0
    """Nesting: 0 for callbacks from the host, 1 for hostcalls inside them, ..."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "name": self.name,
            "context_id": self.context_id,
            "args": {k: _jsonable(v) for k, v in self.args.items()},
            "result": _jsonable(self.result),
            "duration_us": round(self.duration_ns / 1000, 3),
            "depth": self.depth,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": value.hex()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class Context:
    """State the host keeps for one context id."""

    kind = "vm"

    def __init__(self, context_id: int, root: RootContext | None) -> None:
        self.id = context_id
        self.root = root
        self.properties: dict[tuple[bytes, ...], bytes] = {}
        self.connection: Connection | None = None


class RootContext(Context):
    """A plugin's root context."""

    kind = "root"

    def __init__(self, context_id: int, plugin: Plugin) -> None:
        super().__init__(context_id, None)
        self.root = self
        self.plugin = plugin
        self.configuring = False
        self.tick_period_ms = 0
        self.tick_generation = 0
        self.done_pending = False
        self.last_status: tuple[int, bytes] = (0, b"")


@dataclass(slots=True)
class Side:
    """One direction of an HTTP stream (request = decode, response = encode)."""

    stream_type: StreamType
    """``HTTP_REQUEST`` or ``HTTP_RESPONSE``."""
    before: HttpMessage | None = None
    """The message as it arrived at the filter."""
    headers: HeaderPairs | None = None
    """The live header map the filter reads and edits."""
    trailers: HeaderPairs | None = None
    """The live trailer map."""
    held: HeldBody = field(default_factory=HeldBody)
    """Body bytes held at the filter (the body buffer the filter sees), kept
    as the frames came until the filter writes (:attr:`buffer`)."""
    forwarded_headers: HeaderPairs | None = None
    """Headers as passed on, once they were."""
    forwarded: list[Chunk] = field(default_factory=list)
    """Body frames passed on so far (references; :attr:`forwarded_body`)."""
    received: list[Chunk] = field(default_factory=list)
    """Every body frame that reached the filter, in order (references)."""
    forwarded_trailers: HeaderPairs | None = None
    """Trailers as passed on."""
    headers_seen: bool = False
    """The headers callback ran."""
    end_received: bool = False
    """The whole message (body, trailers) has arrived at the filter."""
    trailers_received: bool = False
    """Trailers arrived (and wait for, or went through, their callback)."""
    trailers_called: bool = False
    """The trailers callback ran."""
    stopped: str | None = None
    """Where iteration stopped: ``headers``, ``body`` or ``trailers``."""
    in_body_callback: bool = False
    """A body callback is running (buffer available)."""
    body_eos: bool = False
    """The running body callback has ``end_of_stream``."""
    complete: bool = False
    """Everything was passed on (end of stream forwarded)."""

    @property
    def buffer(self) -> bytearray:
        """The held body as a ``bytearray`` to change (joined once, on demand)."""
        return self.held.mutable()

    @property
    def forwarded_body(self) -> bytes:
        """Body bytes passed on so far (a new ``bytes``)."""
        return b"".join(map(readable, self.forwarded))

    @property
    def body_available(self) -> bool:
        """Whether the body buffer is readable now."""
        return self.in_body_callback or (self.stopped is not None and bool(self.held))

    def body_after(self) -> bytes:
        """The body as passed on plus what is held.

        The "before" body's own object when the filter let it through
        unchanged (no copy).
        """
        forwarded, held = self.forwarded, self.held
        if held.size or held.data:
            parts = forwarded + held.parts()
        elif forwarded:
            parts = forwarded
        else:
            return b""
        before = self.before
        return joined(parts, self.received, b"" if before is None else before.body)

    def after(self) -> HttpMessage | None:
        """The message as the filter passed it on, or as it left it if held."""
        if self.headers is None:
            return None
        headers = (
            self.forwarded_headers
            if self.forwarded_headers is not None
            else self.headers
        )
        trailers = (
            self.forwarded_trailers
            if self.forwarded_trailers is not None
            else self.trailers
        )
        return HttpMessage(
            list(headers),
            self.body_after(),
            None if trailers is None else list(trailers),
        )


class HttpContext(Context):
    """An HTTP stream's context."""

    kind = "http"

    def __init__(self, context_id: int, root: RootContext) -> None:
        super().__init__(context_id, root)
        self.request = Side(StreamType.HTTP_REQUEST)
        self.response = Side(StreamType.HTTP_RESPONSE)
        self.callback = ""
        self.local_reply: LocalReply | None = None
        self.pending_continue: list[StreamType] = []
        self.pending_close: list[StreamType] = []
        self.in_log = False
        self.start_ns = 0

    def side(self, stream_type: StreamType) -> Side:
        """The request or response side."""
        return self.request if stream_type is StreamType.HTTP_REQUEST else self.response


TcpAction = Literal["continue", "close"]


@dataclass(slots=True)
class TcpSide:
    """One direction of a TCP connection.

    ``DOWNSTREAM``: client → proxy → upstream (buffer 2); ``UPSTREAM``: upstream
    → proxy → client (buffer 3).
    """

    stream_type: StreamType
    """``DOWNSTREAM`` or ``UPSTREAM``."""
    received: bytearray = field(default_factory=bytearray)
    """Every byte that arrived at the filter from this side's sender."""
    buffer: bytearray = field(default_factory=bytearray)
    """Bytes held at the filter: the data buffer the filter reads and edits."""
    forwarded: bytearray = field(default_factory=bytearray)
    """Bytes passed on (to the upstream, or to the client)."""
    attached: bool = False
    """The buffer is readable: set for a data callback and kept while paused
    (Envoy keeps its buffer pointer unless the callback returned Continue)."""
    stopped: bool = False
    """The last data callback paused (StopIteration) and nothing resumed it."""
    end_received: bool = False
    """The sender ended its data (``end_of_stream`` / half-close)."""
    closed: bool = False
    """This side's connection closed."""
    close_peer: PeerType | None = None
    """Who closed it, as told to the filter."""


class TcpContext(Context):
    """A TCP (network filter) connection's context."""

    kind = "tcp"

    def __init__(self, context_id: int, root: RootContext) -> None:
        super().__init__(context_id, root)
        self.downstream = TcpSide(StreamType.DOWNSTREAM)
        self.upstream = TcpSide(StreamType.UPSTREAM)
        self.callback = ""
        # continue/close requests, applied in order after the VM call (Envoy
        # defers them the same way).
        self.pending: list[tuple[TcpAction, StreamType]] = []
        self.start_ns = 0

    def side(self, stream_type: StreamType) -> TcpSide:
        """The downstream or upstream side."""
        if stream_type is StreamType.DOWNSTREAM:
            return self.downstream
        if stream_type is StreamType.UPSTREAM:
            return self.upstream
        raise ValueError(f"{stream_type!r} is not a TCP stream type")

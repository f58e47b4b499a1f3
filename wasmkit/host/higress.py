"""Higress's host functions: Redis calls, and the extras answered as unimplemented.

Higress's Envoy (a proxy-wasm-cpp-host fork) accepts the marker
``proxy_abi_version_0_2_100`` as ABI 0.2.1 and links five more ``env``
functions (``wasmkit.abi.signatures.HIGRESS_IMPORTS``). wasmkit links them for
a module declaring that marker (or loaded with ``FilterVm(abi="higress")``):

* ``proxy_redis_init(cluster, username, password, timeout_ms)`` opens a client
  for a Redis cluster; ``proxy_redis_call(cluster, query, *token)`` sends one
  RESP-encoded command. The reply comes later, on the virtual clock, through
  ``proxy_on_redis_call_response(root_id, token, status, response_size)`` on
  the root context, with the RESP reply readable as buffer 9
  (``BufferType.REDIS_CALL_RESPONSE``) during that callback. Status 0 is a
  reply; wasmkit answers a failure or a timeout with status 1 and no data.
  Tokens are 3, 7, 11, ... as cpp-host's Redis call ids.
* ``proxy_inject_encoded_data_to_filter_chain``, ``proxy_get_upstream_hosts``
  and ``proxy_set_upstream_override_host`` are recorded (:attr:`Higress.
  unimplemented`) and answered ``UNIMPLEMENTED``.

A *Redis responder* stands in for the Redis clusters, as the HTTP callout
responder does for HTTP clusters: a function of a :class:`RedisCall` returning
RESP bytes, a :class:`RedisReply` (status, latency), a plain value encoded as
RESP, or ``None`` (no answer: the call times out after the ``timeout_ms`` of
``proxy_redis_init``, or is never answered without one); or a table built by
:func:`redis_table_responder`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wasmkit.abi.constants import BufferType, LogLevel, WasmResult
from wasmkit.host import imports

if TYPE_CHECKING:
    from wasmkit.host.plugin import FilterVm

OK = int(WasmResult.OK)
BAD_ARGUMENT = int(WasmResult.BAD_ARGUMENT)
NOT_FOUND = int(WasmResult.NOT_FOUND)
INVALID_MEMORY_ACCESS = int(WasmResult.INVALID_MEMORY_ACCESS)
UNIMPLEMENTED = int(WasmResult.UNIMPLEMENTED)

FAILURE_STATUS = 1
"""The status wasmkit delivers for a failed or timed-out Redis call."""

_REDIS = int(BufferType.REDIS_CALL_RESPONSE)


@dataclass(slots=True)
class RedisCall:
    """One ``proxy_redis_call`` the filter made."""

    token: int
    """The token the filter got back (3, 7, 11, ...)."""
    context_id: int
    """The context that made the call."""
    root_id: int
    """The root context the reply is delivered to."""
    cluster: str
    """The cluster name as given (Higress may add ``?db=N``)."""
    query: bytes
    """The RESP-encoded command."""
    sent_ns: int
    """Virtual time of the call (ns)."""
    timeout_ms: int = 0
    """The cluster's timeout from ``proxy_redis_init`` (0: none)."""
    response: bytes | None = None
    """The RESP reply delivered, if any."""
    status: int | None = None
    """The status delivered (0: a reply)."""
    outcome: str = "pending"
    """``pending``, ``response``, ``failure`` or ``timeout``."""
    delivered_ns: int | None = None
    """Virtual time of the delivery (ns)."""

    @property
    def command(self) -> list[bytes]:
        """The command's words (``[b"GET", b"key"]``); empty if not RESP."""
        return decode_command(self.query) or []

    @property
    def name(self) -> str:
        """The command name, upper-case (``GET``), or ``""``."""
        words = self.command
        return words[0].decode("utf-8", "replace").upper() if words else ""

    @property
    def cluster_name(self) -> str:
        """The cluster without Higress's ``?db=N`` suffix."""
        return self.cluster.split("?", 1)[0]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "token": self.token,
            "context_id": self.context_id,
            "cluster": self.cluster,
            "command": [w.decode("utf-8", "replace") for w in self.command],
            "outcome": self.outcome,
            "status": self.status,
            "response": None
            if self.response is None
            else self.response.decode("utf-8", "replace"),
            "latency_ms": None
            if self.delivered_ns is None
            else (self.delivered_ns - self.sent_ns) / 1e6,
        }


@dataclass(frozen=True, slots=True)
class RedisReply:
    """A Redis responder's answer with its timing."""

    data: bytes = b""
    """The RESP reply bytes (a bulk string ``$5``, CRLF, ``hello``, CRLF...)."""
    status: int = 0
    """0 for a reply; anything else is a failure (the data is then empty)."""
    latency_ms: float = 0.0
    """Virtual time until the reply arrives (ms)."""


RedisResponder = Callable[[RedisCall], Any]
"""A function of the call returning bytes, a :class:`RedisReply`, a value or
``None``."""


def encode(value: Any) -> bytes:
    """A Python value as a RESP reply.

    ``None`` is a null bulk string, ``int`` an integer, ``str``/``bytes`` a
    bulk string, a list or tuple an array, ``{"error": "ERR ..."}`` an error
    and ``{"status": "OK"}`` a simple string.

    Raises:
        TypeError: the value has no RESP form.
    """
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bool):
        return b":%d\r\n" % int(value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes | bytearray):
        return b"$%d\r\n%s\r\n" % (len(value), bytes(value))
    if isinstance(value, list | tuple):
        return b"*%d\r\n" % len(value) + b"".join(encode(v) for v in value)
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, text),) = value.items()
        if key in ("error", "status"):
            prefix = b"-" if key == "error" else b"+"
            return prefix + str(text).encode() + b"\r\n"
    raise TypeError(f"no RESP form for {value!r}")


def decode_command(raw: bytes) -> list[bytes] | None:
    """The words of a RESP array of bulk strings; ``None`` if malformed."""
    try:
        if not raw.startswith(b"*"):
            return None
        end = raw.index(b"\r\n")
        count = int(raw[1:end])
        pos = end + 2
        words = []
        for _ in range(max(count, 0)):
            if raw[pos : pos + 1] != b"$":
                return None
            end = raw.index(b"\r\n", pos)
            size = int(raw[pos + 1 : end])
            start = end + 2
            if size < 0 or raw[start + size : start + size + 2] != b"\r\n":
                return None
            words.append(raw[start : start + size])
            pos = start + size + 2
        return words if pos == len(raw) else None
    except ValueError:
        return None


def _reply(value: Any) -> RedisReply:
    if isinstance(value, RedisReply):
        return value
    if isinstance(value, bytes | bytearray):
        return RedisReply(bytes(value))
    if isinstance(value, Mapping) and (
        "fail" in value or "value" in value or "resp" in value
    ):
        latency = float(value.get("latency_ms", 0))
        if value.get("fail"):
            return RedisReply(b"", int(value.get("status", FAILURE_STATUS)), latency)
        raw = value.get("resp")
        data = raw.encode() if isinstance(raw, str) else raw
        return RedisReply(
            data if data is not None else encode(value.get("value")), 0, latency
        )
    return RedisReply(encode(value))


@dataclass(slots=True)
class RedisTable:
    """Answers from a table.

    Keys are ``cluster``, ``cluster COMMAND`` or ``cluster COMMAND key``
    (command upper-case); the most specific match wins.
    """

    entries: dict[str, RedisReply] = field(default_factory=dict)

    @property
    def clusters(self) -> set[str]:
        """The cluster names the table knows."""
        return {key.split(" ", 1)[0] for key in self.entries}

    def __call__(self, call: RedisCall) -> RedisReply | None:
        """The table's answer to ``call``, or ``None`` (no answer)."""
        words = call.command
        name = call.name
        keys = [call.cluster_name]
        if name:
            keys.insert(0, f"{call.cluster_name} {name}")
        if len(words) > 1:
            key = words[1].decode("utf-8", "replace")
            keys.insert(0, f"{call.cluster_name} {name} {key}")
        for key in keys:
            if key in self.entries:
                return self.entries[key]
        return None


def redis_table_responder(table: Mapping[str, Any]) -> RedisTable:
    """A Redis responder from a table.

    Values are RESP bytes, :class:`RedisReply`, plain values (encoded with
    :func:`encode`), or dicts ``{"value": v, "latency_ms": ms}``,
    ``{"resp": raw RESP text}`` or ``{"fail": true}``.
    """
    return RedisTable({key: _reply(value) for key, value in table.items()})


class Higress:
    """The Higress state of one :class:`~wasmkit.host.plugin.FilterVm`.

    Args:
        vm: the VM.
        responder: answers Redis calls (a function or a table); without one no
            Redis cluster exists and ``proxy_redis_init`` fails.
    """

    def __init__(
        self, vm: FilterVm, responder: RedisResponder | Mapping[str, Any] | None
    ) -> None:
        self.vm = vm
        if responder is not None and not callable(responder):
            responder = redis_table_responder(responder)
        self.responder: RedisResponder | None = responder
        self.clusters: set[str] | None = (
            responder.clusters
            if isinstance(responder, RedisTable)
            else (None if responder is not None else set())
        )
        self.redis_calls: list[RedisCall] = []
        """Every Redis call the filter made, in order."""
        self.initialized: dict[str, int] = {}
        """Clusters the filter initialised, with their timeouts (ms)."""
        self.unimplemented: list[tuple[str, bytes | None]] = []
        """Calls of Higress functions wasmkit does not emulate, with their data."""
        self.response: bytes | None = None
        self._next_token = 3

    def known(self, cluster: str) -> bool:
        """Whether ``cluster`` (without ``?db=N``) is a Redis cluster here."""
        base = cluster.split("?", 1)[0]
        return self.clusters is None or base in self.clusters

    def call(self, ctx_id: int, cluster: str, query: bytes) -> tuple[int, int]:
        """Send a Redis call; the reply comes later through the root context."""
        vm = self.vm
        ctx = vm.ctx
        root = ctx.root
        if root is None or not self.known(cluster):
            return BAD_ARGUMENT, 0
        token = self._next_token
        self._next_token += 4
        call = RedisCall(
            token=token,
            context_id=ctx_id,
            root_id=root.id,
            cluster=cluster,
            query=query,
            sent_ns=vm.clock.now_ns(),
            timeout_ms=self.initialized.get(cluster, 0),
        )
        self.redis_calls.append(call)
        answer = self.responder(call) if self.responder is not None else None
        events = vm.events
        generation = events.generation
        timeout = call.timeout_ms
        if answer is not None:
            reply = _reply(answer)
            if timeout == 0 or reply.latency_ms < timeout:

                def deliver() -> None:
                    if generation == events.generation:
                        outcome = "response" if reply.status == 0 else "failure"
                        self._deliver(call, root, reply.status, reply.data, outcome)

                events.scheduler.after(reply.latency_ms, deliver)
                return OK, token
        if timeout > 0:

            def expire() -> None:
                if generation == events.generation:
                    self._deliver(call, root, FAILURE_STATUS, b"", "timeout")

            events.scheduler.after(timeout, expire)
        return OK, token

    def _deliver(
        self, call: RedisCall, root: Any, status: int, data: bytes, outcome: str
    ) -> None:
        call.delivered_ns = self.vm.clock.now_ns()
        call.outcome = outcome
        call.status = status
        call.response = data if status == 0 else None
        self.response = data if status == 0 else b""
        try:
            self.vm.events.call_root(
                "proxy_on_redis_call_response",
                (root.id, call.token, status, len(self.response)),
                root,
            )
        finally:
            self.response = None

    def refuse(self, name: str, data: bytes | None) -> int:
        """Record a call of an unemulated function; answer ``UNIMPLEMENTED``."""
        if not any(n == name for n, _ in self.unimplemented):
            self.vm.log_host(
                LogLevel.WARN, f"{name}: a Higress function wasmkit does not emulate"
            )
        self.unimplemented.append((name, data))
        return UNIMPLEMENTED


def _state(h: FilterVm) -> Higress:
    state: Higress = h.higress
    return state


# --- host functions (named after the symbol without proxy_) ---


def redis_init(
    h: FilterVm,
    cluster_ptr: int,
    cluster_size: int,
    username_ptr: int,
    username_size: int,
    password_ptr: int,
    password_size: int,
    timeout_ms: int,
) -> int:
    """Open a client for a Redis cluster (``BAD_ARGUMENT``: no such cluster)."""
    cluster = h.mem.read(cluster_ptr, cluster_size)
    username = h.mem.read(username_ptr, username_size)
    password = h.mem.read(password_ptr, password_size)
    if cluster is None or username is None or password is None:
        return INVALID_MEMORY_ACCESS
    state = _state(h)
    name = cluster.decode("utf-8", "replace")
    if not state.known(name):
        return BAD_ARGUMENT
    state.initialized[name] = timeout_ms
    return OK


def redis_call(
    h: FilterVm,
    cluster_ptr: int,
    cluster_size: int,
    query_ptr: int,
    query_size: int,
    ret_token: int,
) -> int:
    """Send a RESP command; the token answers in proxy_on_redis_call_response."""
    cluster = h.mem.read(cluster_ptr, cluster_size)
    query = h.mem.read(query_ptr, query_size)
    if cluster is None or query is None:
        return INVALID_MEMORY_ACCESS
    # As cpp-host: check the token pointer before starting the call.
    if not h.mem.write_u32(ret_token, 0):
        return INVALID_MEMORY_ACCESS
    status, token = _state(h).call(h.ctx.id, cluster.decode("utf-8", "replace"), query)
    if status == OK:
        h.mem.write_u32(ret_token, token)
    return status


def inject_encoded_data_to_filter_chain(
    h: FilterVm, body_ptr: int, body_size: int, end_stream: int
) -> int:
    """Recorded; ``UNIMPLEMENTED``."""
    return _state(h).refuse(
        "proxy_inject_encoded_data_to_filter_chain", h.mem.read(body_ptr, body_size)
    )


def get_upstream_hosts(h: FilterVm, ret_ptr: int, ret_size: int) -> int:
    """Recorded; ``UNIMPLEMENTED``."""
    return _state(h).refuse("proxy_get_upstream_hosts", None)


def set_upstream_override_host(h: FilterVm, address_ptr: int, address_size: int) -> int:
    """Recorded; ``UNIMPLEMENTED``."""
    return _state(h).refuse(
        "proxy_set_upstream_override_host", h.mem.read(address_ptr, address_size)
    )


def get_buffer_bytes(
    h: FilterVm,
    buffer_type: int,
    start: int,
    max_size: int,
    ret_ptr: int,
    ret_size: int,
) -> int:
    """``proxy_get_buffer_bytes`` that also reads buffer 9 (a Redis reply)."""
    if buffer_type != _REDIS:
        return imports.get_buffer_bytes(
            h, buffer_type, start, max_size, ret_ptr, ret_size
        )
    buf = _state(h).response
    if buf is None:
        return NOT_FOUND
    data = buf[start : start + max_size] if start < len(buf) else b""
    if not h.mem.copy_out(data, ret_ptr, ret_size):
        return INVALID_MEMORY_ACCESS
    h.out = data
    return OK


def get_buffer_status(
    h: FilterVm, buffer_type: int, ret_len: int, ret_flags: int
) -> int:
    """``proxy_get_buffer_status`` that also knows buffer 9."""
    if buffer_type != _REDIS:
        return imports.get_buffer_status(h, buffer_type, ret_len, ret_flags)
    buf = _state(h).response
    if buf is None:
        return NOT_FOUND
    ok = h.mem.write_u32(ret_len, len(buf)) and h.mem.write_u32(ret_flags, 0)
    return OK if ok else INVALID_MEMORY_ACCESS


_FUNCTIONS: dict[str, Callable[..., int]] = {
    "proxy_redis_init": redis_init,
    "proxy_redis_call": redis_call,
    "proxy_inject_encoded_data_to_filter_chain": inject_encoded_data_to_filter_chain,
    "proxy_get_upstream_hosts": get_upstream_hosts,
    "proxy_set_upstream_override_host": set_upstream_override_host,
    "proxy_get_buffer_bytes": get_buffer_bytes,
    "proxy_get_buffer_status": get_buffer_status,
}


def lookup(name: str) -> Callable[..., int] | None:
    """The Higress implementation of ``env`` import ``name``, if it has its own.

    Besides Higress's functions, the buffer functions are wrapped so buffer 9
    (a Redis reply) is readable.
    """
    return _FUNCTIONS.get(name)

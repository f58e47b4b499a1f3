"""Proxy-wasm enumerations and limits, named as in the spec."""

from __future__ import annotations

import enum


class WasmResult(enum.IntEnum):
    """``proxy_status_t``: the status every host function returns."""

    OK = 0  # success
    NOT_FOUND = 1  # no such key, queue, context, buffer now
    BAD_ARGUMENT = 2  # an argument is out of range or unknown
    SERIALIZATION_FAILURE = 3  # a value could not be serialized
    PARSE_FAILURE = 4  # input could not be parsed
    BAD_EXPRESSION = 5  # C++ SDK only
    INVALID_MEMORY_ACCESS = 6  # a pointer or length outside guest memory
    EMPTY = 7  # queue empty
    CAS_MISMATCH = 8  # shared data compare-and-swap failed
    RESULT_MISMATCH = 9  # C++ SDK only
    INTERNAL_FAILURE = 10  # the host failed
    BROKEN_CONNECTION = 11  # a callout's connection broke
    UNIMPLEMENTED = 12  # not supported by this host


class Action(enum.IntEnum):
    """``proxy_action_t``: what an SDK callback asks of the stream."""

    CONTINUE = 0  # go on with the stream
    PAUSE = 1  # stop until the filter continues it


class FilterHeadersStatus(enum.IntEnum):
    """Envoy's header callback statuses (the C++ SDK may return all of them)."""

    CONTINUE = 0  # forward the headers
    STOP_ITERATION = 1  # hold the headers, let body through (converted, see below)
    CONTINUE_AND_END_STREAM = 2  # forward the headers and end the stream
    STOP_ALL_ITERATION_AND_BUFFER = 3  # hold headers and buffer everything
    STOP_ALL_ITERATION_AND_WATERMARK = 4  # hold headers, buffer with watermarks


class FilterDataStatus(enum.IntEnum):
    """Envoy's body callback statuses."""

    CONTINUE = 0  # forward the (buffered) body
    STOP_ITERATION_AND_BUFFER = 1  # buffer; the next call sees the whole body
    STOP_ITERATION_AND_WATERMARK = 2  # buffer with watermarks
    STOP_ITERATION_NO_BUFFER = 3  # hold, do not buffer (data is dropped here)


class BufferType(enum.IntEnum):
    """``proxy_buffer_type_t``."""

    HTTP_REQUEST_BODY = 0  # request body, in request body callbacks
    HTTP_RESPONSE_BODY = 1  # response body, in response body callbacks
    DOWNSTREAM_DATA = 2  # TCP data from the client
    UPSTREAM_DATA = 3  # TCP data from the backend
    HTTP_CALL_RESPONSE_BODY = 4  # body of an HTTP callout's response
    GRPC_RECEIVE_BUFFER = 5  # one gRPC response message
    VM_CONFIGURATION = 6  # the VM configuration (0.2.0+)
    PLUGIN_CONFIGURATION = 7  # the plugin configuration (0.2.0+)
    CALL_DATA = 8  # foreign function arguments (0.2.0+)
    REDIS_CALL_RESPONSE = 9  # Higress only: a Redis call's reply (RESP bytes)


class MapType(enum.IntEnum):
    """``proxy_map_type_t``."""

    HTTP_REQUEST_HEADERS = 0  # request headers, pseudo-headers included
    HTTP_REQUEST_TRAILERS = 1  # request trailers
    HTTP_RESPONSE_HEADERS = 2  # response headers with ``:status``
    HTTP_RESPONSE_TRAILERS = 3  # response trailers
    GRPC_RECEIVE_INITIAL_METADATA = 4  # gRPC initial metadata (read-only)
    GRPC_RECEIVE_TRAILING_METADATA = 5  # gRPC trailing metadata (read-only)
    HTTP_CALL_RESPONSE_HEADERS = 6  # callout response headers (read-only)
    HTTP_CALL_RESPONSE_TRAILERS = 7  # callout response trailers (read-only)


class StreamType(enum.IntEnum):
    """``proxy_stream_type_t`` (0.2.0+)."""

    HTTP_REQUEST = 0  # the request path of an HTTP stream
    HTTP_RESPONSE = 1  # the response path of an HTTP stream
    DOWNSTREAM = 2  # the client side of a TCP connection
    UPSTREAM = 3  # the backend side of a TCP connection


class LogLevel(enum.IntEnum):
    """``proxy_log_level_t``."""

    TRACE = 0  # most verbose
    DEBUG = 1  # debugging detail
    INFO = 2  # normal operation
    WARN = 3  # something odd
    ERROR = 4  # something failed
    CRITICAL = 5  # the filter cannot go on

    @property
    def label(self) -> str:
        """The lower-case name used in records: ``trace`` ... ``critical``."""
        return self.name.lower()


class PeerType(enum.IntEnum):
    """``proxy_peer_type_t``: who closed a connection."""

    UNKNOWN = 0  # not known
    LOCAL = 1  # the proxy
    REMOTE = 2  # the peer


class MetricType(enum.IntEnum):
    """``proxy_metric_type_t``."""

    COUNTER = 0  # monotonic count
    GAUGE = 1  # settable value
    HISTOGRAM = 2  # distribution of samples


class WasiErrno(enum.IntEnum):
    """The WASI errno values the host returns."""

    SUCCESS = 0  # no error
    BADF = 8  # bad file descriptor
    NOTDIR = 20  # not a directory
    FAULT = 21  # bad address
    INVAL = 28  # invalid argument
    NOENT = 44  # no such file
    NOSYS = 52  # function not supported
    NOTSUP = 58  # not supported
    NOTCAPABLE = 76  # capability missing


class AbiVersion(enum.Enum):
    """The proxy-wasm ABI versions a module can declare."""

    V0_1_0 = "0.1.0"  # 2020-02: continue_request/response, get_configuration
    V0_2_0 = "0.2.0"  # continue_stream, close_stream, buffers 6-8
    V0_2_1 = "0.2.1"  # adds proxy_get_log_level

    @property
    def marker(self) -> str:
        """The export name that declares this version."""
        return "proxy_abi_version_" + self.value.replace(".", "_")


HIGRESS_MARKER = "proxy_abi_version_0_2_100"
"""Higress's own ABI marker: ABI 0.2.1 plus Higress's host functions."""

VENDOR_MARKERS: dict[str, tuple[AbiVersion, str]] = {
    HIGRESS_MARKER: (AbiVersion.V0_2_1, "higress"),
}
"""Non-spec ABI markers a host accepts: marker -> (ABI it means, vendor)."""


MAX_PAIRS_BYTES = 1 << 20
"""Largest serialized header map the host decodes (bytes), as in cpp-host."""

MAX_PAIRS_COUNT = 1024
"""Most pairs in a serialized header map, as in cpp-host."""

MAX_RANDOM_BYTES = 64 * 1024
"""Largest ``random_get`` request (bytes); larger ones get ``INVAL``."""

WASM_PAGE = 64 * 1024
"""Size of one wasm memory page (bytes)."""

"""A network-filter probe in WAT: each callback logs its name, some log the
connection's properties.

Lines: ``new``; ``down <eos>`` / ``up <eos>`` per data callback; ``dclose
<peer>`` / ``uclose <peer>`` (0 unknown, 1 local, 2 remote); ``done``,
``log``, ``delete``. After ``new``, ``dclose`` and ``log`` come one line per
property of :data:`PROPERTIES`: ``<name>=<hex of the value>`` or ``<name>
missing``. :func:`probe` with ``close`` set makes ``proxy_on_upstream_data``
call ``proxy_close_stream`` on that stream type (and log ``up 9`` after).
"""

from __future__ import annotations

from wasmkit.abi.constants import StreamType
from wasmkit.testing import filter_wat

PROPERTIES = [
    "request.time",
    "request.duration",
    "request.total_size",
    "response.total_size",
    "response.flags",
    "response.code",
    "response.code_details",
    "connection.termination_details",
]

_HELPERS = """
(func $hex (param $src i32) (param $n i32) (param $dst i32)
  (local $i i32) (local $b i32) (local $d i32)
  (block $done (loop $next
    (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
    (local.set $b (i32.load8_u (i32.add (local.get $src) (local.get $i))))
    (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 1))))
    (i32.store8 (local.get $d) (i32.load8_u (i32.add (global.get $s_digits)
      (i32.shr_u (local.get $b) (i32.const 4)))))
    (i32.store8 (i32.add (local.get $d) (i32.const 1)) (i32.load8_u
      (i32.add (global.get $s_digits) (i32.and (local.get $b) (i32.const 15)))))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $next))))
;; log "<tag>" or "<tag> <digit>" (a < 0: no digit)
(func $say (param $t i32) (param $tl i32) (param $a i32)
  (local $n i32)
  (memory.copy (i32.const 4096) (local.get $t) (local.get $tl))
  (local.set $n (local.get $tl))
  (if (i32.ge_s (local.get $a) (i32.const 0)) (then
    (i32.store8 (i32.add (i32.const 4096) (local.get $n)) (i32.const 32))
    (i32.store8 (i32.add (i32.const 4097) (local.get $n))
      (i32.add (i32.const 48) (local.get $a)))
    (local.set $n (i32.add (local.get $n) (i32.const 2)))))
  (drop (call $proxy_log (i32.const 2) (i32.const 4096) (local.get $n))))
;; log "<name>=<hex>" (at most 32 bytes shown) or "<name> missing"
(func $prop (param $name i32) (param $nl i32) (param $p i32) (param $pl i32)
  (local $n i32) (local $len i32)
  (memory.copy (i32.const 8192) (local.get $name) (local.get $nl))
  (if (i32.eqz (call $proxy_get_property (local.get $p) (local.get $pl)
                 (i32.const 512) (i32.const 516)))
    (then
      (local.set $len (i32.load (i32.const 516)))
      (if (i32.gt_u (local.get $len) (i32.const 32))
        (then (local.set $len (i32.const 32))))
      (i32.store8 (i32.add (i32.const 8192) (local.get $nl)) (i32.const 61))
      (call $hex (i32.load (i32.const 512)) (local.get $len)
        (i32.add (i32.const 8193) (local.get $nl)))
      (local.set $n (i32.add (i32.add (local.get $nl) (i32.const 1))
        (i32.shl (local.get $len) (i32.const 1)))))
    (else
      (memory.copy (i32.add (i32.const 8192) (local.get $nl))
        (global.get $s_missing) (global.get $s_missing_len))
      (local.set $n (i32.add (local.get $nl) (global.get $s_missing_len)))))
  (drop (call $proxy_log (i32.const 2) (i32.const 8192) (local.get $n))))
(func (export "proxy_on_context_create") (param i32 i32))
"""


def _say(tag: str, arg: str = "(i32.const -1)") -> str:
    return f"(call $say (global.get $s_{tag}) (global.get $s_{tag}_len) {arg})"


def _props() -> str:
    return "\n".join(
        f"(call $prop (global.get $s_n{i}) (global.get $s_n{i}_len) "
        f"(global.get $s_p{i}) (global.get $s_p{i}_len))"
        for i in range(len(PROPERTIES))
    )


def probe(close: StreamType | None = None) -> str:
    """The probe's WAT (``close``: the stream ``proxy_on_upstream_data`` closes)."""
    closing = (
        f"(drop (call $proxy_close_stream (i32.const {int(close)})))"
        + _say("up", "(i32.const 9)")
        if close is not None
        else ""
    )
    body = (
        _HELPERS
        + f"""
(func (export "proxy_on_new_connection") (param i32) (result i32)
  {_say("new")} {_props()} (i32.const 0))
(func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32)
  {_say("down", "(local.get 2)")} (i32.const 0))
(func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
  {_say("up", "(local.get 2)")} {closing} (i32.const 0))
(func (export "proxy_on_downstream_connection_close") (param i32 i32)
  {_say("dclose", "(local.get 1)")} {_props()})
(func (export "proxy_on_upstream_connection_close") (param i32 i32)
  {_say("uclose", "(local.get 1)")})
(func (export "proxy_on_done") (param i32) (result i32) {_say("done")} (i32.const 1))
(func (export "proxy_on_log") (param i32) {_say("log")} {_props()})
(func (export "proxy_on_delete") (param i32) {_say("delete")})
"""
    )
    tags = ["new", "down", "up", "dclose", "uclose", "done", "log", "delete"]
    return filter_wat(
        body,
        strings={
            "digits": "0123456789abcdef",
            "missing": " missing",
            **{t: t for t in tags},
            **{f"n{i}": name for i, name in enumerate(PROPERTIES)},
            **{f"p{i}": name.replace(".", "\0") for i, name in enumerate(PROPERTIES)},
        },
    )


def u64(value: int) -> str:
    """A property's hex as the probe logs an 8-byte integer."""
    return value.to_bytes(8, "little").hex()

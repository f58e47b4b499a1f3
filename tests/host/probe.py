"""A probe filter in WAT that logs every header it sees, on each path.

Run through wasmkit and through real Envoy, its logs show what the filter
sees: ``rqh n=3 eos=1`` then one ``rqh <name>: <value>`` line per request
header; ``rqb size=N eos=E`` per request body callback; ``rqt`` trailers;
``rsh`` / ``rsb`` / ``rst`` the same for the response.

A request header ``x-probe-reply: <3-digit status>`` makes it answer with a
local reply from ``on_request_headers``: body from ``x-probe-reply-body``
(empty when absent), headers ``x-probe: yes``, ``x-second: 2`` and, when
``x-probe-reply-ctype`` is present, ``content-type: text/probe``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from wasmkit.abi import pairs
from wasmkit.testing import filter_wat

_PAIRS = pairs.encode([(b"x-probe", b"yes"), (b"x-second", b"2")])
_PAIRS_CTYPE = pairs.encode(
    [(b"x-probe", b"yes"), (b"x-second", b"2"), (b"content-type", b"text/probe")]
)

_BODY = r"""
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))

  ;; decimal digits of $v at $dst; returns how many
  (func $itoa (param $v i32) (param $dst i32) (result i32)
    (local $n i32) (local $i i32) (local $t i32)
    (if (i32.eqz (local.get $v))
      (then (i32.store8 (local.get $dst) (i32.const 48)) (return (i32.const 1))))
    (block $done (loop $more
      (br_if $done (i32.eqz (local.get $v)))
      (i32.store8 (i32.add (local.get $dst) (local.get $n))
        (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br $more)))
    ;; reverse in place
    (local.set $i (i32.const 0))
    (block $rdone (loop $rev
      (br_if $rdone (i32.ge_s (local.get $i)
        (i32.sub (i32.sub (local.get $n) (local.get $i)) (i32.const 1))))
      (local.set $t (i32.load8_u (i32.add (local.get $dst) (local.get $i))))
      (i32.store8 (i32.add (local.get $dst) (local.get $i))
        (i32.load8_u (i32.add (local.get $dst)
          (i32.sub (i32.sub (local.get $n) (local.get $i)) (i32.const 1)))))
      (i32.store8 (i32.add (local.get $dst)
          (i32.sub (i32.sub (local.get $n) (local.get $i)) (i32.const 1)))
        (local.get $t))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $rev)))
    (local.get $n))

  ;; writes "<tag> <k1>=<v1> <k2>=<v2>" at $dst; returns the length
  (func $line (param $dst i32) (param $tag i32)
      (param $k1 i32) (param $k1len i32) (param $v1 i32)
      (param $k2 i32) (param $k2len i32) (param $v2 i32) (result i32)
    (local $p i32)
    (i32.store8 (local.get $dst) (i32.load8_u (local.get $tag)))
    (i32.store8 (i32.add (local.get $dst) (i32.const 1))
      (i32.load8_u (i32.add (local.get $tag) (i32.const 1))))
    (i32.store8 (i32.add (local.get $dst) (i32.const 2))
      (i32.load8_u (i32.add (local.get $tag) (i32.const 2))))
    (i32.store8 (i32.add (local.get $dst) (i32.const 3)) (i32.const 32))
    (local.set $p (i32.add (local.get $dst) (i32.const 4)))
    (memory.copy (local.get $p) (local.get $k1) (local.get $k1len))
    (local.set $p (i32.add (local.get $p) (local.get $k1len)))
    (i32.store8 (local.get $p) (i32.const 61))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (local.set $p (i32.add (local.get $p) (call $itoa (local.get $v1) (local.get $p))))
    (i32.store8 (local.get $p) (i32.const 32))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (memory.copy (local.get $p) (local.get $k2) (local.get $k2len))
    (local.set $p (i32.add (local.get $p) (local.get $k2len)))
    (i32.store8 (local.get $p) (i32.const 61))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (local.set $p (i32.add (local.get $p) (call $itoa (local.get $v2) (local.get $p))))
    (i32.sub (local.get $p) (local.get $dst)))

  ;; logs "<tag> n=<count> eos=<eos>" and then "<tag> <name>: <value>" per pair
  (func $dump (param $map i32) (param $tag i32) (param $eos i32)
    (local $base i32) (local $count i32) (local $i i32) (local $sizes i32)
    (local $data i32) (local $klen i32) (local $vlen i32) (local $out i32)
    (local $p i32)
    (drop (call $proxy_get_header_map_pairs (local.get $map)
      (i32.const 512) (i32.const 516)))
    (local.set $base (i32.load (i32.const 512)))
    (if (i32.eqz (i32.load (i32.const 516)))
      (then (local.set $count (i32.const 0)))
      (else (local.set $count (i32.load (local.get $base)))))
    (local.set $out (call $malloc (i32.const 4096)))
    (drop (call $proxy_log (i32.const 2) (local.get $out)
      (call $line (local.get $out) (local.get $tag)
        (global.get $s_n) (i32.const 1) (local.get $count)
        (global.get $s_eos) (i32.const 3) (local.get $eos))))
    (local.set $sizes (i32.add (local.get $base) (i32.const 4)))
    (local.set $data (i32.add (local.get $sizes) (i32.mul (local.get $count) (i32.const 8))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
      (local.set $klen (i32.load (i32.add (local.get $sizes) (i32.mul (local.get $i) (i32.const 8)))))
      (local.set $vlen (i32.load (i32.add (local.get $sizes)
        (i32.add (i32.mul (local.get $i) (i32.const 8)) (i32.const 4)))))
      (local.set $out (call $malloc (i32.add (i32.add (local.get $klen) (local.get $vlen)) (i32.const 8))))
      (memory.copy (local.get $out) (local.get $tag) (i32.const 3))
      (i32.store8 (i32.add (local.get $out) (i32.const 3)) (i32.const 32))
      (local.set $p (i32.add (local.get $out) (i32.const 4)))
      (memory.copy (local.get $p) (local.get $data) (local.get $klen))
      (local.set $p (i32.add (local.get $p) (local.get $klen)))
      (i32.store8 (local.get $p) (i32.const 58))
      (i32.store8 (i32.add (local.get $p) (i32.const 1)) (i32.const 32))
      (local.set $p (i32.add (local.get $p) (i32.const 2)))
      (memory.copy (local.get $p)
        (i32.add (i32.add (local.get $data) (local.get $klen)) (i32.const 1))
        (local.get $vlen))
      (local.set $p (i32.add (local.get $p) (local.get $vlen)))
      (drop (call $proxy_log (i32.const 2) (local.get $out)
        (i32.sub (local.get $p) (local.get $out))))
      (local.set $data (i32.add (local.get $data)
        (i32.add (i32.add (local.get $klen) (local.get $vlen)) (i32.const 2))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next))))

  (func $body (param $tag i32) (param $size i32) (param $eos i32)
    (local $out i32)
    (local.set $out (call $malloc (i32.const 64)))
    (drop (call $proxy_log (i32.const 2) (local.get $out)
      (call $line (local.get $out) (local.get $tag)
        (global.get $s_size) (i32.const 4) (local.get $size)
        (global.get $s_eos) (i32.const 3) (local.get $eos)))))

  ;; the value of request header $name: sets 520/524 (ptr, len); 0 when absent
  (func $req (param $name i32) (param $len i32) (result i32)
    (i32.eqz (call $proxy_get_header_map_value (i32.const 0)
      (local.get $name) (local.get $len) (i32.const 520) (i32.const 524))))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $status i32) (local $s i32) (local $body i32) (local $blen i32)
    (global.set $heap (i32.const 65536))
    (call $dump (i32.const 0) (global.get $s_rqh) (local.get $eos))
    (if (i32.eqz (call $req (global.get $s_reply) (global.get $s_reply_len)))
      (then (return (i32.const 0))))
    (local.set $s (i32.load (i32.const 520)))
    (local.set $status (i32.add (i32.add
      (i32.mul (i32.sub (i32.load8_u (local.get $s)) (i32.const 48)) (i32.const 100))
      (i32.mul (i32.sub (i32.load8_u (i32.add (local.get $s) (i32.const 1))) (i32.const 48)) (i32.const 10)))
      (i32.sub (i32.load8_u (i32.add (local.get $s) (i32.const 2))) (i32.const 48))))
    (if (call $req (global.get $s_rbody) (global.get $s_rbody_len))
      (then (local.set $body (i32.load (i32.const 520)))
            (local.set $blen (i32.load (i32.const 524)))))
    (if (call $req (global.get $s_rctype) (global.get $s_rctype_len))
      (then (drop (call $proxy_send_local_response (local.get $status)
              (global.get $s_details) (global.get $s_details_len)
              (local.get $body) (local.get $blen)
              (global.get $s_pairs_ctype) (global.get $s_pairs_ctype_len) (i32.const -1))))
      (else (drop (call $proxy_send_local_response (local.get $status)
              (global.get $s_details) (global.get $s_details_len)
              (local.get $body) (local.get $blen)
              (global.get $s_pairs) (global.get $s_pairs_len) (i32.const -1)))))
    (i32.const 1))
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (global.set $heap (i32.const 65536))
    (call $body (global.get $s_rqb) (local.get $size) (local.get $eos))
    (i32.const 0))
  (func (export "proxy_on_request_trailers") (param i32) (param i32) (result i32)
    (global.set $heap (i32.const 65536))
    (call $dump (i32.const 1) (global.get $s_rqt) (i32.const 1))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32) (param i32) (param $eos i32) (result i32)
    (global.set $heap (i32.const 65536))
    (call $dump (i32.const 2) (global.get $s_rsh) (local.get $eos))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (global.set $heap (i32.const 65536))
    (call $body (global.get $s_rsb) (local.get $size) (local.get $eos))
    (i32.const 0))
  (func (export "proxy_on_response_trailers") (param i32) (param i32) (result i32)
    (global.set $heap (i32.const 65536))
    (call $dump (i32.const 3) (global.get $s_rst) (i32.const 1))
    (i32.const 0))
"""

PROBE_WAT = filter_wat(
    _BODY,
    strings={
        "rqh": "rqh",
        "rqb": "rqb",
        "rqt": "rqt",
        "rsh": "rsh",
        "rsb": "rsb",
        "rst": "rst",
        "n": "n",
        "eos": "eos",
        "size": "size",
        "reply": "x-probe-reply",
        "rbody": "x-probe-reply-body",
        "rctype": "x-probe-reply-ctype",
        "details": "probe reply",
        "pairs": _PAIRS,
        "pairs_ctype": _PAIRS_CTYPE,
    },
    memory_pages=4,
)
"""The probe filter (WAT text, ABI 0.2.1)."""

BUFFERING_PROBE_WAT = PROBE_WAT.replace(
    """(call $body (global.get $s_rqb) (local.get $size) (local.get $eos))
    (i32.const 0))""",
    """(call $body (global.get $s_rqb) (local.get $size) (local.get $eos))
    (i32.eqz (local.get $eos)))""",
).replace(
    """(call $body (global.get $s_rsb) (local.get $size) (local.get $eos))
    (i32.const 0))""",
    """(call $body (global.get $s_rsb) (local.get $size) (local.get $eos))
    (i32.eqz (local.get $eos)))""",
)
"""The probe, pausing (buffering) each body until its end."""
assert BUFFERING_PROBE_WAT.count("i32.eqz (local.get $eos)") == 2

_TAGS = ("rqh", "rqb", "rqt", "rsh", "rsb", "rst")


@dataclass
class View:
    """What the probe logged for one stream."""

    headers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Per map tag (``rqh``, ``rqt``, ``rsh``, ``rst``): the pairs, in order."""
    counts: dict[str, list[str]] = field(default_factory=dict)
    """Per tag: the ``n=.. eos=..`` / ``size=.. eos=..`` lines, in order."""

    def get(self, tag: str, name: str) -> str | None:
        """The first value of ``name`` the probe saw under ``tag``."""
        return next((v for k, v in self.headers.get(tag, []) if k == name), None)

    def names(self, tag: str) -> list[str]:
        """The header names seen under ``tag``, in order."""
        return [k for k, _ in self.headers.get(tag, [])]


def view(messages: Iterable[str]) -> View:
    """Parse the probe's log messages of one stream."""
    out = View()
    for message in messages:
        tag, _, rest = message.partition(" ")
        if tag not in _TAGS:
            continue
        if rest.startswith(("n=", "size=")):
            out.counts.setdefault(tag, []).append(rest)
            out.headers.setdefault(tag, [])
            continue
        name, _, value = rest.partition(": ")
        out.headers.setdefault(tag, []).append((name, value))
    return out

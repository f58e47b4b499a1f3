"""``wasmkit run`` end to end, in a subprocess, on real modules."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wasmkit.testing import filter_wat

from .host.test_safety import BOMB, LOOP, TRAP_ON_BOOM
from .host.test_stream import DENY

ADD = filter_wat(
    """
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (local.get 1)
            (global.get $cfg_ptr) (global.get $cfg_len)))
      (i32.const 1))
    (global $cfg_ptr i32 (i32.const 600))
    (global $cfg_len i32 (i32.const 604))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 0)
        (global.get $s_k) (global.get $s_k_len) (i32.load (i32.const 600)) (i32.load (i32.const 604))))
      (i32.const 0))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
      (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const -1) (i32.const 0)
            (global.get $s_tail) (global.get $s_tail_len)))
      (i32.const 0))
    """,
    strings={"k": "x-config", "tail": "!"},
)


def wasmkit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wasmkit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_run_json_record(tmp_path):
    body = tmp_path / "body.txt"
    body.write_bytes(b"payload")
    proc = wasmkit(
        "run",
        write(tmp_path, "add.wat", ADD),
        "--config",
        "from-config",
        "--method",
        "post",
        "--url",
        "http://api.test/x?y=1",
        "-H",
        "Accept: text/plain",
        "--body",
        f"@{body}",
        "--status",
        "201",
        "--response-header",
        "Server: s",
        "--response-body",
        "resp",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    req = record["request"]
    assert req["method"] == "POST"
    assert req["url"] == "http://api.test/x?y=1"
    assert ["accept", "text/plain"] in req["headers"]["before"]
    assert ["x-config", "from-config"] in req["headers"]["after"]
    # The filter appends "!" in each body callback: once for the body, once
    # for the empty end-of-stream frame Envoy's HTTP/1 codec adds.
    assert req["body"] == {"before": "payload", "after": "payload!!"}
    assert record["response"]["status"] == {"before": 201, "after": 201}
    assert record["response"]["body"]["after"] == "resp"
    assert record["local_reply"] is None
    assert record["error"] is None
    kinds = {event["kind"] for event in record["trace"]}
    # "host": what Envoy's connection manager changed around the filter.
    assert kinds == {"callback", "hostcall", "host"}


def test_run_text_output(tmp_path):
    proc = wasmkit("run", write(tmp_path, "add.wat", ADD), "--config", "v", "--trace")
    assert proc.returncode == 0, proc.stderr
    assert "+ x-config: v" in proc.stdout
    assert "response  200 -> 200" in proc.stdout
    assert "proxy_add_header_map_value(" in proc.stdout


def test_run_local_reply(tmp_path):
    proc = wasmkit("run", write(tmp_path, "deny.wat", DENY), "--json")
    record = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert record["local_reply"]["status"] == 403
    assert record["local_reply"]["body"] == "forbidden\n"
    assert record["response"]["status"] == {"before": None, "after": 403}
    assert record["request"]["forwarded"] is False


def test_binary_bodies_are_base64(tmp_path):
    body = tmp_path / "bin"
    body.write_bytes(b"\xff\x00\xfe")
    proc = wasmkit(
        "run", write(tmp_path, "add.wat", ADD), "--body", f"@{body}", "--json"
    )
    record = json.loads(proc.stdout)
    assert record["request"]["body"]["before"] == {"base64": "/wD+"}


@pytest.mark.parametrize(
    ("name", "wat", "extra", "kind"),
    [
        ("trap", TRAP_ON_BOOM, ["--url", "http://h/boom"], "trap"),
        ("loop", LOOP, ["--timeout-ms", "200"], "timeout"),
        ("bomb", BOMB, ["--memory-mb", "16"], "memory"),
    ],
)
def test_hostile_filters_return_quickly_with_the_error_kind(
    tmp_path, name, wat, extra, kind
):
    start = time.monotonic()
    proc = wasmkit("run", write(tmp_path, f"{name}.wat", wat), *extra, "--json")
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    record = json.loads(proc.stdout)
    assert record["error"]["kind"] == kind
    assert record["error"]["callback"] == "proxy_on_request_headers"
    text = wasmkit("run", write(tmp_path, f"{name}.wat", wat), *extra)
    assert text.returncode == 1
    assert f"error     [{kind}]" in text.stdout


def test_allocator_making_host_calls_is_an_abi_error(tmp_path):
    wat = filter_wat(
        """
        (global $heap (mut i32) (i32.const 65536))
        (func (export "malloc") (param i32) (result i32)
          (local $p i32)
          (drop (call $proxy_get_current_time_nanoseconds (i32.const 512)))
          (local.set $p (global.get $heap))
          (global.set $heap (i32.add (global.get $heap) (local.get 0)))
          (local.get $p))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 512) (i32.const 516)))
          (i32.const 0))
        """,
        allocator=None,
    )
    proc = wasmkit("run", write(tmp_path, "alloc.wat", wat), "--json")
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "abi"
    assert "guest allocator" in error["message"]


def test_unloadable_filters_are_load_errors(tmp_path):
    no_marker = '(module (memory (export "memory") 1))'
    proc = wasmkit("run", write(tmp_path, "nomark.wat", no_marker), "--json")
    assert proc.returncode == 1
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "load"
    assert "proxy_abi_version" in error["message"]
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm\x01\0\0\0\x01")
    proc = wasmkit("run", str(broken))
    assert proc.returncode == 1
    assert "[load]" in proc.stderr and "broken.wasm" in proc.stderr


def test_bad_command_line_is_refused(tmp_path):
    proc = wasmkit("run", write(tmp_path, "add.wat", ADD), "-H", "no-colon")
    assert proc.returncode == 2
    assert "name: value" in proc.stderr


def test_run_with_callouts_table_and_python_responder(tmp_path):
    from .host.test_events import AUTH, METRICS

    table = tmp_path / "callouts.json"
    table.write_text(
        json.dumps({"auth": {"status": 200, "body": "ok", "latency_ms": 5}})
    )
    proc = wasmkit(
        "run", write(tmp_path, "auth.wat", AUTH), "--callouts", str(table), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    (call,) = record["callouts"]
    assert call["cluster"] == "auth" and call["path"] == "/check"
    assert call["status"] == 200 and call["outcome"] == "response"
    assert call["latency_ms"] == 5.0
    assert record["request"]["forwarded"] is True
    script = tmp_path / "responder.py"
    script.write_text(
        "from wasmkit.host import response\n"
        "def responder(call):\n"
        "    return response(403 if call.cluster == 'auth' else 200)\n"
    )
    # A function responder answers only the clusters declared (Envoy has
    # only those): without --cluster the callout is refused (BadArgument).
    args = ("run", write(tmp_path, "auth.wat", AUTH), "--callouts", str(script))
    record = json.loads(wasmkit(*args, "--json").stdout)
    assert record["callouts"] == []
    assert any("cluster 'auth'" in note for note in record["notes"])
    proc = wasmkit(*args, "--cluster", "auth", "--json")
    record = json.loads(proc.stdout)
    assert record["response"]["status"]["after"] == 403
    assert record["local_reply"]["callback"] == "proxy_on_http_call_response"
    metrics = json.loads(
        wasmkit("run", write(tmp_path, "m.wat", METRICS), "--json").stdout
    )["metrics"]
    assert metrics == {
        "wasmcustom.requests": 1,
        "wasmcustom.inflight": -5,
        "wasmcustom.sizes": [42],
    }
    bad = wasmkit(
        "run", write(tmp_path, "auth.wat", AUTH), "--callouts", str(tmp_path / "x.json")
    )
    assert bad.returncode != 0 and "--callouts" in bad.stderr


def test_run_with_properties(tmp_path):
    wat = filter_wat(
        """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             (drop (call $proxy_get_property (global.get $s_p) (global.get $s_p_len)
               (i32.const 600) (i32.const 604)))
             (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 600))
               (i32.load (i32.const 604))))
             (i32.const 0))""",
        strings={"p": b"xds\0route_name"},
    )
    proc = wasmkit(
        "run",
        write(tmp_path, "p.wat", wat),
        "--property",
        "xds.route_name=api-v2",
        "--json",
    )
    record = json.loads(proc.stdout)
    assert [log["message"] for log in record["logs"]] == ["api-v2"]
    bad = wasmkit("run", write(tmp_path, "p.wat", wat), "--property", "novalue")
    assert bad.returncode != 0 and "PATH=VALUE" in bad.stderr

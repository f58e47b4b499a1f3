"""The VM flags ``wasmkit run`` and ``wasmkit replay`` share (wasmkit.options)."""

from __future__ import annotations

import argparse
import json

import pytest

from wasmkit import options
from wasmkit.testing import filter_wat

from .host.test_safety import LOOP, SLOW_CONFIGURE
from .replay.test_run import FLOW
from .test_cli import wasmkit, write

# Logs the property xds.route_name (info) and "warned" (warn) on each request.
PROPERTY_LOGGER = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_get_property (global.get $s_p) (global.get $s_p_len)
           (i32.const 600) (i32.const 604)))
         (drop (call $proxy_log (i32.const 2) (i32.load (i32.const 600))
           (i32.load (i32.const 604))))
         (drop (call $proxy_log (i32.const 3) (global.get $s_w) (global.get $s_w_len)))
         (i32.const 0))""",
    strings={"p": b"xds\0route_name", "w": "warned"},
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    options.add_vm_arguments(parser)
    options.add_build_arguments(parser)
    return parser.parse_args(argv)


def test_flags_make_limits_and_vm_options(tmp_path):
    cfg = tmp_path / "vm.json"
    cfg.write_text('{"vm": 1}')
    args = _parse(
        "--timeout-ms", "0", "--start-timeout-ms", "1500", "--memory-mb", "32",
        "--fuel", "5000", "--log-level", "debug", "--vm-config", f"@{cfg}",
        "--property", "a.b=7", "--property", "c=true", "--property", "d=text",
    )  # fmt: skip
    got = options.vm_options(args)
    limits = got["limits"]
    assert limits.timeout_ms is None and limits.startup_timeout_ms == 1500
    assert limits.memory_bytes == 32 << 20 and limits.fuel == 5000
    assert got["log_level"] == "debug"
    assert got["vm_configuration"] == b'{"vm": 1}'
    assert got["properties"] == {"a.b": 7, "c": True, "d": "text"}
    defaults = options.vm_options(_parse())
    assert defaults["limits"] == options.Limits()
    with pytest.raises(ValueError, match="cannot read"):
        options.vm_options(_parse("--vm-config", f"@{tmp_path / 'absent'}"))
    with pytest.raises(ValueError, match="PATH=VALUE"):
        options.vm_options(_parse("--property", "novalue"))
    built = options.build_options(
        _parse("--tags", "a,b", "--tags", "c", "--go-flags", "-x '-ldflags=-s -w'")
    )
    assert built == {
        "tags": ("a,b", "c"),
        "go_flags": ("-x", "-ldflags=-s -w"),
        "extra_args": (),
    }


def test_replay_takes_properties_and_log_level(tmp_path):
    out = tmp_path / "records.json"
    proc = wasmkit(
        "replay", write(tmp_path, "p.wat", PROPERTY_LOGGER), str(FLOW),
        "--property", "xds.route_name=api-v2", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())
    assert records and all(
        [log["message"] for log in r["logs"]] == ["api-v2", "warned"] for r in records
    )
    proc = wasmkit(
        "replay", write(tmp_path, "p.wat", PROPERTY_LOGGER), str(FLOW),
        "--log-level", "warn", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())
    assert all([log["message"] for log in r["logs"]] == ["warned"] for r in records)


def test_replay_limits(tmp_path):
    loop = write(tmp_path, "loop.wat", LOOP)
    # fail_reload with a short backoff: the second flow runs on a new VM.
    proc = wasmkit(
        "replay", loop, str(FLOW), "--limit", "2", "--timeout-ms", "40",
        "--failure-policy", "fail_reload", "--reload-backoff-ms", "2",
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stdout.count("ran past its limit of 40 ms per callback") == 2
    out = tmp_path / "r.json"
    proc = wasmkit(
        "replay",
        loop,
        str(FLOW),
        "--limit",
        "2",
        "--fuel",
        "100000",
        "--failure-policy",
        "fail_reload",
        "--reload-backoff-ms",
        "2",
        "--json",
        str(out),
    )
    errors = [r["error"] for r in json.loads(out.read_text())]
    assert errors and all(
        e["kind"] == "timeout" and "100000 instructions" in e["message"] for e in errors
    )


def test_start_timeout_flag_applies_to_configure(tmp_path):
    slow = write(tmp_path, "slow.wat", SLOW_CONFIGURE)
    config = "x" * 200
    ok = wasmkit("run", slow, "--config", config, "--timeout-ms", "5", "--json")
    record = json.loads(ok.stdout)
    assert record["error"]["kind"] == "timeout"  # the slow request callback
    assert "5 ms per callback" in record["error"]["message"]
    short = wasmkit(
        "replay", slow, str(FLOW), "--config", config, "--start-timeout-ms", "5"
    )
    assert short.returncode == 1
    assert "start-up limit of 5 ms" in short.stderr
    assert "--start-timeout-ms" in short.stderr
    assert "Traceback" not in short.stderr
    bad = wasmkit("replay", slow, str(FLOW), "--timeout-ms", "-1")
    assert bad.returncode != 0 and "--timeout-ms must be 0" in bad.stderr


def test_failure_policy_flags(tmp_path):
    from .host.test_safety import TRAP_ON_BOOM

    got = options.vm_options(
        _parse("--failure-policy", "fail_reload", "--reload-backoff-ms", "2")
    )
    assert (got["failure_policy"], got["reload_backoff_ms"]) == ("fail_reload", 2)
    assert "failure_policy" not in options.vm_options(_parse())
    with pytest.raises(ValueError, match="over 1"):
        options.vm_options(_parse("--reload-backoff-ms", "1"))
    trap = write(tmp_path, "trap.wat", TRAP_ON_BOOM)
    out = tmp_path / "records.json"
    failed = {}
    for policy in ("fail_closed", "fail_open"):
        proc = wasmkit(
            "replay", trap, str(FLOW), "--failure-policy", policy, "--json", str(out)
        )
        assert proc.returncode == 1, proc.stderr
        records = json.loads(out.read_text())
        failed[policy] = [r["index"] for r in records if r["error"]]
        # Flow 4 (/form) traps; under fail_closed every later flow fails.
        assert records[4]["error"]["callback"] == "proxy_on_request_headers"
        assert "the VM failed at flow 4" in " ".join(records[5]["notes"])
    assert failed["fail_closed"] == list(range(4, 17))
    assert failed["fail_open"] == [4]


def test_vm_environment_flags(tmp_path, monkeypatch):
    from .host.test_plugin import ENV_LOGGER

    monkeypatch.setenv("WASMKIT_TEST_REGION", "eu-1")
    got = options.vm_options(
        _parse("--env", "A=1", "--env", "B=x=y", "--host-env", "WASMKIT_TEST_REGION")
    )
    assert got["environment"] == {"A": "1", "B": "x=y"}
    assert got["host_env_keys"] == ("WASMKIT_TEST_REGION",)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        options.vm_options(_parse("--env", "novalue"))
    out = tmp_path / "records.json"
    proc = wasmkit(
        "replay", write(tmp_path, "env.wat", ENV_LOGGER), str(FLOW), "--limit", "1",
        "--env", "A=1", "--host-env", "WASMKIT_TEST_REGION", "--json", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(out.read_text())
    assert [log["message"] for log in record["logs"]] == [
        "A=1;WASMKIT_TEST_REGION=eu-1;"
    ]

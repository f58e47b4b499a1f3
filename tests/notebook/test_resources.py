"""The Resources view and ``ReplayResult.resources()``: real replays, real numbers."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from wasmkit.host import HttpMessage
from wasmkit.host.limits import Limits
from wasmkit.notebook import curl, resources
from wasmkit.notebook.explorer import ReplayExplorer
from wasmkit.replay.results import RESOURCE_COLUMNS
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "samples" / "captures" / "api.flow"
PAGE = 65536

# Grows its memory by a page on every request: the leak the hint is for.
LEAKY = filter_wat(
    """
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (memory.grow (i32.const 1)))
      (i32.const 0))
    """
)
# Adds a header on every response, memory untouched.
STEADY = filter_wat(
    """
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_add_header_map_value (i32.const 2)
        (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
      (i32.const 0))
    """,
    strings={"k": "x-steady", "v": "1"},
)


@pytest.fixture(scope="module")
def leaky():
    return replay(LEAKY, FLOW)


@pytest.fixture(scope="module")
def steady():
    return replay(STEADY, FLOW, limits=Limits(fuel=10_000_000))


def test_resources_frame_has_nullable_columns_per_flow(steady):
    frame = steady.resources()
    assert list(frame.columns[: len(RESOURCE_COLUMNS)]) == RESOURCE_COLUMNS
    assert list(frame["flow"]) == [f.index for f in steady.flows]
    assert str(frame["us"].dtype) == "Float64" and str(frame["fuel"].dtype) == "Int64"
    assert str(frame["memory_bytes"].dtype) == "Int64"
    assert "us_on_response_headers" in frame.columns
    # The filter's time is its callbacks' and fits in the stream's.
    callbacks = [c for c in frame.columns if c.startswith("us_on")]
    total = frame[callbacks].sum(axis=1, skipna=True)
    assert ((frame["us_filter"] - total).abs() < 0.5).all()
    assert (frame["us_filter"] <= frame["us"]).all()
    # One add_header_map_value per response, counted among the host calls.
    assert (frame["host_calls"] >= 1).all()
    assert (frame["memory_bytes"] == 2 * PAGE).all()


def test_fuel_is_counted_per_flow_only_with_fuel_metering(steady, leaky):
    fuel = steady.resources()["fuel"]
    assert fuel.notna().all() and (fuel > 0).all()
    # The same callbacks on the same kind of flow cost the same fuel.
    assert fuel.iloc[0] == fuel.iloc[9]
    assert leaky.resources()["fuel"].isna().all()


def test_memory_after_each_flow_and_the_leak_hint(leaky, steady):
    memory = list(leaky.resources()["memory_bytes"])
    assert memory == [(2 + i + 1) * PAGE for i in range(len(memory))]
    hint = resources.view(leaky.resource_rows())["leak"]
    assert hint is not None
    assert f"grew {len(memory) - 1} times over {len(memory)} flows" in hint
    assert "from 192 KiB to 1,216 KiB" in hint
    assert resources.view(steady.resource_rows())["leak"] is None


def test_leak_hint_rules():
    flows = list(range(20))
    levelled = [100] * 3 + [200] * 3 + [300] + [400] * 13  # grew early, then flat
    assert resources.leak_hint(flows, levelled) is None
    growing = [100 + 10 * (i // 3) for i in flows]
    assert resources.leak_hint(flows, growing) is not None
    assert resources.leak_hint(flows[:5], growing[:5]) is None  # too few flows
    assert resources.leak_hint(flows, [None] * 20) is None


def test_the_explorer_resources_tab(leaky):
    explorer = ReplayExplorer(leaky)
    view = explorer.resources
    keys = [s["key"] for s in view["series"]]
    assert keys == ["us_filter", "host_calls", "memory_bytes"]  # no fuel measured
    memory = next(s for s in view["series"] if s["key"] == "memory_bytes")
    assert memory["flows"] == [f.index for f in leaky.flows]
    assert memory["max"] == memory["values"][-1] == (2 + len(leaky.flows)) * PAGE
    assert view["leak"] and view["callbacks"][0]["flows"] == len(leaky.flows)
    assert {c["callback"] for c in view["callbacks"]} >= {"on_request_headers"}


def test_series_are_thinned_keeping_spikes():
    rows = [
        {"flow": i, "us_filter": 1.0, "host_calls": 1, "memory_bytes": None}
        for i in range(5000)
    ]
    rows[4321]["us_filter"] = 999.0
    view = resources.view(rows)
    us = next(s for s in view["series"] if s["key"] == "us_filter")
    assert len(us["values"]) <= resources.MAX_POINTS
    assert max(us["values"]) == 999.0 and us["total"] == 4999 + 999
    assert "memory_bytes" not in [s["key"] for s in view["series"]]


def _message(headers, body=b""):
    return HttpMessage([(k.encode(), v.encode()) for k, v in headers], body)


def test_curl_commands_are_shell_quoted(tmp_path):
    request = _message(
        [
            (":method", "PUT"),
            (":scheme", "https"),
            (":authority", "api.test"),
            (":path", "/a b?x='1'&y=$HOME"),
            ("host", "api.test"),
            ("content-length", "9"),
            ("x-quote", 'it\'s "quoted" $(nope)'),
        ],
        b"{'a': 1}\n",
    )
    command = curl.command(request)
    words = shlex.split(command)
    assert words == [
        "curl", "-X", "PUT", "https://api.test/a b?x='1'&y=$HOME",
        "-H", "x-quote: it's \"quoted\" $(nope)", "--data-binary", "{'a': 1}\n",
    ]  # fmt: skip
    assert curl.command(_message([(":method", "GET"), (":path", "/")])).startswith(
        "curl http:///"
    )
    # A binary body goes through printf byte for byte: run it in a real shell
    # with curl replaced by cat.
    data = bytes(range(256))
    binary = curl.command(_message([(":method", "POST"), (":path", "/")], data))
    assert binary.startswith("printf '%b' ") and "--data-binary @-" in binary
    script = binary.split(" | ")[0] + " > out.bin"
    subprocess.run(["sh", "-c", script], cwd=tmp_path, check=True, timeout=10)
    assert (tmp_path / "out.bin").read_bytes() == data

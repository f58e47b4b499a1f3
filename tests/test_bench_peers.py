"""The peer hosts of benchmarks/bench_peers.py really run the module.

scripts/build-peers.sh builds the Go SDK's proxytest harness (wasm mode) and
the C floor on the wheel's libwasmtime into build/peers (as ``make peers``
does; a second build is a stamp check). Each peer, and wasmkit's own worker,
then runs the add_headers Go sample for a few lifecycles: the header the
filter adds and the lines it logs come back from every host, the same on all
three. bench_peers.py and bench_targets.py run a round and print every
target as a PASS or MISS line. No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SAMPLE = ROOT / "build" / "samples" / "add_headers.go.wasm"

pytestmark = pytest.mark.toolchain("go")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """benchmarks/bench_peers.py as a module (it imports bench_host beside it)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_peers", BENCH / "bench_peers.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_peers"] = module  # its dataclasses look themselves up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture(scope="module")
def peers_dir() -> Path:
    for tool in ("go", "cc"):
        if shutil.which(tool) is None:
            pytest.skip(
                f"{tool} is not installed (scripts/build-peers.sh needs go and cc)"
            )
    out = ROOT / "build" / "peers"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-peers.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-peers.sh failed:\n{proc.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def module_path(tmp_path_factory) -> Path:
    if SAMPLE.exists():
        return SAMPLE
    target = tmp_path_factory.mktemp("go") / "add_headers.go.wasm"
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "build-go.sh"),
            str(ROOT / "samples" / "filters" / "add_headers" / "go"),
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the add_headers Go sample failed:\n{proc.stderr}")
    return target


@pytest.fixture(scope="module")
def spec(bench, module_path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "lifecycle.tsv"
    bench.write_spec(path, module_path)
    return path


@pytest.fixture
def peers(bench, spec, module_path, peers_dir):
    made = bench.make_peers(spec, module_path, peers_dir)
    yield {peer.name: peer for peer in made}
    for peer in made:
        peer.close()


def test_every_host_runs_the_filter_and_agrees(peers, spec):
    seen = {}
    for name in ("wasmkit", "proxytest", "floor"):
        peer = peers[name]
        peer.start()
        rows = peer.show()
        assert ("request", "x-bench", "1") in rows, name
        assert ("response", "x-bench", "1") in rows, name
        assert peer.run(5) >= 0  # "ran 5 <ns>", checked by Peer.run
        seen[name] = rows
    # The filter saw the spec's headers and added its own at the end, on every
    # host; each logged the same two lines.
    given = [tuple(line.split("\t")) for line in spec.read_text().splitlines()]
    request = [
        (s, n, v) for s, n, v in (g for g in given if len(g) == 3) if s == "request"
    ]
    assert seen["wasmkit"][: len(request)] == request
    assert seen["wasmkit"][len(request)] == ("request", "x-bench", "1")
    assert seen["proxytest"] == seen["wasmkit"] == seen["floor"]
    assert [r for r in seen["floor"] if r[0] == "log"] == [
        ("log", "info", "add_headers: added 1 request headers"),
        ("log", "info", "add_headers: added 1 response headers"),
    ]


def test_proxytest_peer_starts_a_fresh_vm(bench, peers):
    peer = peers["proxytest"]
    peer.start()
    peer.fresh_after = 3
    peer.run(2)
    peer.run(2)  # over the limit: a new VM first
    assert peer.since_fresh == 2
    bench.check(peer)


def test_trace_on_worker_runs_too(bench, peers):
    peer = peers["wasmkit trace on"]
    peer.start()
    bench.check(peer)


@pytest.mark.parametrize("binary", ["proxytest-peer", "wasmtime-floor"])
def test_a_bad_spec_is_one_line(peers_dir, tmp_path, binary):
    bad = tmp_path / "bad.tsv"
    bad.write_text("wasm\t/nonexistent.wasm\nbogus line\n")
    proc = subprocess.run(
        [str(peers_dir / binary), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nonexistent.wasm" in lines[0], proc.stderr


def test_bench_peers_prints_ratios_and_targets(peers_dir, module_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_peers.py"),
            "--rounds",
            "1",
            "--batch",
            "0.01",
            "--peers",
            str(peers_dir),
            "--module",
            str(module_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for key in ("wasmkit/proxytest", "wasmkit/floor", "trace on/off"):
        assert key in out
    verdicts = [line for line in out.splitlines() if line.startswith(("PASS", "MISS"))]
    assert len(verdicts) == 3
    assert "test-framework: skipped" in out


def test_bench_targets_prints_the_other_targets():
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_targets.py"),
            "--rounds",
            "1",
            "--replay-flows",
            "300",
            "--capture-flows",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    verdicts = [
        line for line in proc.stdout.splitlines() if line.startswith(("PASS", "MISS"))
    ]
    assert [v.split(":")[0].split(" ", 1)[1] for v in verdicts] == [
        "replay of pre-loaded flows >= 3x 587545f's flows/s, one core",
        "body cost per KiB at 1 MiB <= 1.5x that at 64 KiB",
        "capture cold load >= 1.0x mitmproxy's FlowReader",
    ], proc.stdout

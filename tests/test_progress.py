"""Progress: silent when quick, a bar then one summary line when slow."""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from wasmkit.progress import Progress
from wasmkit.replay.run import replay
from wasmkit.testing import filter_wat

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "samples" / "captures" / "api.flow"
ADD = filter_wat(
    """(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
         (drop (call $proxy_add_header_map_value (i32.const 0)
           (global.get $s_k) (global.get $s_k_len) (global.get $s_v) (global.get $s_v_len)))
         (i32.const 0))""",
    strings={"k": "x-replayed", "v": "yes"},
)


def _sleep(seconds: float) -> None:
    # A real slow operation: a subprocess, as a compile is.
    subprocess.run(
        [sys.executable, "-c", f"import time; time.sleep({seconds})"],
        check=True,
        timeout=30,
    )


@pytest.fixture()
def terminal():
    """A pseudo-terminal: the file the bar writes to, and a reader of the output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    stream = os.fdopen(slave, "w", buffering=1)
    os.set_blocking(master, False)

    def read() -> str:
        stream.flush()
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode()

    yield stream, read
    stream.close()
    os.close(master)


def test_quick_work_shows_nothing():
    out = io.StringIO()
    with Progress(desc="replaying", unit="flows", enabled=True, file=out) as bar:
        for _ in range(5):
            bar.update()
        bar.done("replayed 5 flows", "0 modified, 0 failed")
    assert out.getvalue() == ""
    assert not bar.shown and bar.n == 5
    assert bar.summary is not None and bar.summary.startswith("replayed 5 flows in 0.")


def test_off_when_not_a_terminal_unless_asked():
    out = io.StringIO()
    with Progress(desc="building", file=out, delay=0.05, ticker=True) as bar:
        time.sleep(0.15)
        bar.done("built x (go)")
    assert bar.mode == "off" and out.getvalue() == ""
    with Progress(desc="building", file=out, delay=0.05, enabled=False) as bar:
        assert bar.mode == "off"


def test_slow_work_in_a_terminal_shows_a_bar_then_one_summary_line(terminal):
    stream, read = terminal
    with Progress(
        desc="building tiny (go)",
        unit="",
        file=stream,
        delay=0.2,
        ticker=True,
        bar_format="{desc} {elapsed}",
    ) as bar:
        assert bar.mode == "bar"
        _sleep(0.8)
        bar.done("built tiny (go)")
    output = read()
    frames, _, last = output.rpartition("\r\n")
    assert "\rbuilding tiny (go) 00:0" in output  # the bar, redrawn in place
    assert last == "" and frames.endswith(f"\r{bar.summary}")
    assert bar.summary is not None and re.match(
        r"built tiny \(go\) in \d+\.\d s$", bar.summary
    )
    assert output.count("built tiny (go) in") == 1 and bar.shown


def test_counting_bar_in_a_terminal(terminal):
    stream, read = terminal
    with Progress(
        total=3, desc="replaying", unit="flows", file=stream, delay=0.1
    ) as bar:
        for _ in range(3):
            time.sleep(0.1)
            bar.update()
        bar.done("replayed 3 flows", "1 modified, 0 failed")
    output = read()
    assert "replaying:" in output and "3/3" in output
    assert re.search(
        r"\rreplayed 3 flows in \d+\.\d s: 1 modified, 0 failed\r\n$", output
    )


def test_plain_lines_when_asked_for_without_a_terminal():
    out = io.StringIO()
    with Progress(
        desc="replaying",
        unit="flows",
        enabled=True,
        file=out,
        delay=0.1,
        ticker=True,
        heartbeat=0.3,
    ) as bar:
        bar.update(4)
        _sleep(0.7)
        bar.done("replayed 4 flows", "4 modified, 0 failed")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("replaying: 4 flows (")
    assert re.match(r"replayed 4 flows in \d+\.\d s: 4 modified, 0 failed$", lines[-1])
    assert sum("replayed" in line for line in lines) == 1


def test_an_error_clears_the_bar_without_a_summary(terminal):
    stream, read = terminal
    with (
        pytest.raises(RuntimeError),
        Progress(desc="building", file=stream, delay=0.05, ticker=True) as bar,
    ):
        time.sleep(0.2)
        bar.done("built x")
        raise RuntimeError("compile failed")
    output = read()
    assert "building" in output and "built x" not in output
    assert bar.summary is None


def test_replay_is_quiet_by_default_and_reports_when_slow(capsys):
    replay(ADD, FLOW)  # not a terminal, no notebook: off
    assert capsys.readouterr().err == ""
    # The same replay with a slow consumer of each flow: over a second.
    result = replay(ADD, FLOW, on_flow=lambda flow: time.sleep(0.07), progress=True)
    err = capsys.readouterr().err
    assert len(result) == 17
    assert re.fullmatch(
        r"replayed 17 flows in \d+\.\d s: 17 modified, 0 failed, 1 no response\n", err
    )


@pytest.mark.toolchain("go")
def test_a_compile_ends_with_built_name_lang(capsys, tmp_path, monkeypatch):
    from wasmkit import progress
    from wasmkit.build import build, go

    monkeypatch.setenv("WASMKIT_BUILD_CACHE", str(tmp_path))
    # A real compile, shown from its first moment (the 1 s wait set to zero).
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    artifact = build(go.TINY_FILTER, "go", force=True, progress=True)
    err = capsys.readouterr().err
    assert not artifact.cache_hit
    assert re.fullmatch(r"built \w+ \(go\) in \d+\.\d s\n", err.splitlines(True)[-1])
    build(go.TINY_FILTER, "go", progress=True)  # a cache hit: nothing to show
    assert capsys.readouterr().err == ""


def test_a_slow_load_says_what_it_did(monkeypatch, capsys):
    from tests.host.test_safety import SLOW_CONFIGURE
    from wasmkit import progress
    from wasmkit.host import load

    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    plugin = load(SLOW_CONFIGURE, config=b"x" * 50, progress=True)
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("loaded <wat> in ")
    origin = "compiled" if plugin.vm.module.origin == "compiled" else "cached code"
    assert f": {origin} " in err[-1] and ", started " in err[-1]
    assert plugin.load_ms is not None and plugin.load_ms > 0
    quiet = load(SLOW_CONFIGURE, config=b"x", progress=False)
    assert capsys.readouterr().err == "" and quiet.root is not None

"""Ctrl-C during a replay, a kernel interrupt, and worker processes that die.

Real processes throughout: ``wasmkit replay`` subprocesses get a real SIGINT
once they have replayed for a while (their CPU time says so, whatever the
machine's load), a Jupyter kernel is interrupted as the notebook's button
does, and worker processes are killed with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from mitmproxy.io import FlowReader

from tests.replay.test_parallel import spinning
from tests.traffic import helpers
from wasmkit.replay import parallel
from wasmkit.replay.parallel import replay_parallel
from wasmkit.traffic import load_capture

# About 20 ms of wasm per request, then a header added: slow enough to
# interrupt mid-replay, fast enough to replay a few hundred flows.
SPIN = spinning(20_000_000)

FLOWS = 1500


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupts")
    wat = d / "spin.wat"
    wat.write_text(SPIN)
    capture = helpers.write_flows(
        d / "many.flow", [helpers.http_flow(n) for n in range(FLOWS)]
    )
    return wat, capture


@pytest.fixture
def env(tmp_path):
    return {
        **os.environ,
        "WASMKIT_CACHE": str(tmp_path / "kit-cache"),
        "WASMKIT_WORKER_IDLE_S": "0",
    }


def _cpu_s(pid: int) -> float:
    # User + system time of a running process (s), from /proc.
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    # Worker processes (multiprocessing's spawn) whose parent is ``pid``.
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_for(predicate, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _replay_cmd(wat, capture, *args):
    return [
        sys.executable,
        "-m",
        "wasmkit.cli",
        "replay",
        str(wat),
        str(capture),
        *args,
    ]


def _interrupted(cmd, env, *, cpu_s: float = 2.5, timeout: float = 120):
    # Runs ``cmd`` and sends it SIGINT once it used ``cpu_s`` of CPU.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        _wait_for(
            lambda: proc.poll() is not None or _cpu_s(proc.pid) >= cpu_s,
            timeout,
            "the replay to get going",
        )
        assert proc.poll() is None, "the replay ended before the interrupt"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err, time.monotonic() - sent


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def _partial_json(path: Path) -> list[int]:
    doc = json.loads(path.read_text())
    assert doc["interrupted"] is True and doc["partial"] is True
    assert doc["note"].startswith("partial replay: interrupted after")
    indexes = [r["index"] for r in doc["records"]]
    assert doc["flows"] == len(indexes)
    return indexes


def _done(err: str) -> int:
    match = re.search(r"wasmkit replay: interrupted after (\d+) flows", err)
    assert match, err
    return int(match.group(1))


def test_ctrl_c_writes_the_finished_flows_to_every_output_marked_partial(
    slow, env, tmp_path
):
    wat, capture = slow
    out = {k: tmp_path / f"r.{k}" for k in ("json", "flow", "har", "html")}
    code, stdout, err, _ = _interrupted(
        _replay_cmd(
            wat, capture,
            "--json", out["json"], "--out", out["flow"], "--har", out["har"],
            "--html", out["html"],
        ),
        env,
    )  # fmt: skip
    assert code == 130, err
    _no_traceback(err)
    done = _done(err)
    assert 0 < done < FLOWS
    assert f"written marked partial: --json {out['json']}, --out {out['flow']}" in err
    line = [x for x in err.splitlines() if x.startswith("wasmkit replay:")]
    assert len(line) == 1  # one line, naming what was written
    assert f"partial replay: interrupted after {done} flows" in stdout
    assert _partial_json(out["json"]) == list(range(done))
    har = json.loads(out["har"].read_text())
    assert har["log"]["comment"].startswith("partial replay")
    assert len(har["log"]["entries"]) == done
    with open(out["flow"], "rb") as fo:
        flows = list(FlowReader(fo).stream())
    assert len(flows) == done and flows[0].comment.startswith("partial replay")
    assert flows[0].request.headers["x-replayed"] == "yes"
    assert "Partial replay" in out["html"].read_text(encoding="utf-8")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_with_streamed_records_leaves_the_complete_partial_file(
    slow, env, tmp_path
):
    wat, capture = slow
    target = tmp_path / "records.json"
    code, _, err, _ = _interrupted(
        _replay_cmd(wat, capture, "--keep", "summary", "--json", target), env
    )
    assert code == 130, err
    _no_traceback(err)
    done = _done(err)
    assert _partial_json(target) == list(range(done))
    assert [p.name for p in tmp_path.iterdir()] == ["kit-cache", "records.json"]


def test_ctrl_c_with_workers_stops_them_and_keeps_what_came_back(slow, env, tmp_path):
    wat, capture = slow
    target = tmp_path / "records.json"
    code, _, err, took = _interrupted(
        _replay_cmd(
            wat, capture, "--workers", "2", "--balance", "even", "--json", target
        ),
        env,
        cpu_s=3.0,
    )
    assert code == 130, err
    _no_traceback(err)
    indexes = _partial_json(target)
    assert indexes == sorted(set(indexes)) and len(indexes) == _done(err)
    assert indexes[:10] == list(range(10))
    # The worker in the middle of a piece is stopped, not waited for.
    assert took < 20


def test_a_kernel_interrupt_keeps_the_partial_result(slow, env):
    manager = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    wat, capture = slow
    km, kc = manager.start_new_kernel(
        kernel_name="python3", env=env, cwd=str(Path(__file__).resolve().parent.parent)
    )
    try:
        pid = km.provisioner.process.pid
        msg_id = kc.execute(
            "from wasmkit.replay.run import replay\n"
            f"r = replay({str(wat)!r}, {str(capture)!r})\n"
            "print('after the replay')\n"
        )
        start = _cpu_s(pid)
        _wait_for(lambda: _cpu_s(pid) - start >= 2.0, 120, "the replay to get going")
        km.interrupt_kernel()
        out = _outputs(kc, msg_id, timeout=60)
        assert "after the replay" in out["stdout"]  # the cell carried on
        assert "interrupted after" in out["stdout"] + out["stderr"]
        assert "KeyboardInterrupt" not in out["stdout"] + out["stderr"]
        msg_id = kc.execute("print(r.interrupted, r.done_flows, len(r.flows))")
        interrupted, done, kept = _outputs(kc, msg_id, timeout=60)["stdout"].split()
        assert interrupted == "True" and int(done) == int(kept)
        assert 0 < int(done) < FLOWS
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _outputs(kc, msg_id, *, timeout):
    text = {"stdout": "", "stderr": ""}
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text[content["name"]] += content["text"]
        elif kind == "error":
            text["stderr"] += "\n".join(content["traceback"])
        elif kind == "status" and content["execution_state"] == "idle":
            return text


# -- worker processes that die -----------------------------------------------------


def _exchanges(count):
    base = [helpers.http_flow(n) for n in range(4)]
    path = helpers.write_flows(Path(os.environ["WASMKIT_CACHE"]) / "few.flow", base)
    rows = list(load_capture(path))
    return [dataclasses.replace(rows[i % 4], index=i) for i in range(count)]


@pytest.fixture
def kit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WASMKIT_CACHE", str(tmp_path))
    parallel.shutdown_workers()
    yield
    parallel.shutdown_workers()


@pytest.mark.parametrize("balance", ["even", "measured"])
def test_a_worker_killed_before_its_job_is_handed_over(kit_cache, monkeypatch, balance):
    exchanges = _exchanges(200)
    made = []
    new_worker = parallel._new_worker

    def recording(*args):
        made.append(new_worker(*args))
        return made[-1]

    monkeypatch.setattr(parallel, "_new_worker", recording)

    def read_then_kill():
        # The workers are started, the job not yet sent: kill the process and
        # wait until its pool knows it is gone.
        pool = made[-1].pool
        os.kill(pool.submit(os.getpid).result(timeout=60), signal.SIGKILL)
        _wait_for(lambda: _broken(pool), 30, "the pool to notice")
        yield from exchanges

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        two = replay_parallel(SPIN, read_then_kill(), workers=2, balance=balance)
    assert [f.index for f in two] == list(range(200))
    assert all(f.result.request_after.get(b"x-replayed") == b"yes" for f in two)
    notes = [str(w.message) for w in caught if w.category is RuntimeWarning]
    if balance == "even":  # it had a share: its flows were replayed here
        assert notes and "replay worker process 1 stopped" in notes[0]
        assert two.parts[-1][0] == 0 and two.parts[-1][1].stop == 200
    assert parallel.idle_workers() == 0


def _broken(pool) -> bool:
    try:
        pool.submit(os.getpid).cancel()
    except parallel.BrokenProcessPool:
        return True
    return False


@pytest.mark.parametrize("when", ["at once", "mid-replay"])
def test_the_cli_survives_a_worker_killed_at_any_moment(slow, env, tmp_path, when):
    wat, capture = slow
    target = tmp_path / "records.json"
    cmd = _replay_cmd(
        wat, capture, "--workers", "2", "--balance", "even", "--limit", "600",
        "--json", target,
    )  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        _wait_for(
            lambda: _children(proc.pid) or proc.poll() is not None, 60, "a worker"
        )
        workers = _children(proc.pid)
        if when == "mid-replay":  # it started up (~0.5 s) and replays its share
            _wait_for(lambda: _cpu_s(workers[0]) >= 1.2, 60, "the worker's replay")
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenProcessPool:" not in err
    records = json.loads(target.read_text())
    assert [r["index"] for r in records] == list(range(600))
    assert "600 flows replayed" in out
    if when == "mid-replay":
        assert "replay worker process 1 stopped" in err

"""Ctrl-C during a replay, a kernel interrupt, and worker processes that die.

Real processes throughout: ``wasmkit replay`` subprocesses get a real SIGINT
once they have replayed for a while (their CPU time says so, whatever the
machine's load), a Jupyter kernel is interrupted as the notebook's button
does, and the Dask worker processes of a replay are killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mitmproxy.io import FlowReader

from tests.replay.test_parallel import spinning
from tests.traffic import helpers

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
    return {**os.environ, "WASMKIT_CACHE": str(tmp_path / "kit-cache")}


def _cpu_s(pid: int) -> float:
    # User + system time of a running process (s), from /proc.
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers(pid: int) -> list[int]:
    # The Dask worker processes of ``pid``'s local cluster: its nannies run
    # in ``pid`` and start them with multiprocessing's spawn.
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
    return sorted(found)


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


def test_ctrl_c_with_workers_keeps_the_partitions_done(slow, env, tmp_path):
    # 30 partitions of 50 flows (about a second each): interrupted once the
    # workers replayed a few, as Ctrl-C in a terminal (the whole group).
    wat, capture = slow
    target = tmp_path / "records.json"
    cmd = _replay_cmd(
        wat, capture, "--workers", "2", "--partitions", "30", "--json", target
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: len(_workers(proc.pid)) == 2 or proc.poll() is not None,
                  120, "the workers")  # fmt: skip
        workers = _workers(proc.pid)
        start = sum(_cpu_s(p) for p in workers)
        _wait_for(
            lambda: (
                sum(_cpu_s(p) for p in workers) - start >= 4.0
                or proc.poll() is not None
            ),
            120,
            "the workers' replay",
        )
        assert proc.poll() is None, "the replay ended before the interrupt"
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    _no_traceback(err)
    indexes = _partial_json(target)
    assert indexes == sorted(set(indexes)) and len(indexes) == _done(err)
    # Whole partitions (the finished ones, in order, gaps and all).
    blocks = sorted({i // 50 for i in indexes})
    assert indexes == [i for b in blocks for i in range(b * 50, b * 50 + 50)]
    # The partitions under way are cancelled, not waited for.
    assert took < 20
    _wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in workers), 30,
              "the workers to stop")  # fmt: skip


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


@pytest.mark.parametrize("when", ["at once", "mid-replay"])
def test_the_cli_survives_a_worker_killed_at_any_moment(slow, env, tmp_path, when):
    # Dask replays a killed worker's partition on another (its nanny starts
    # a new worker): the records are whole.
    wat, capture = slow
    target = tmp_path / "records.json"
    cmd = _replay_cmd(
        wat, capture, "--workers", "2", "--limit", "600", "--partitions", "6",
        "--json", target,
    )  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        _wait_for(lambda: _workers(proc.pid) or proc.poll() is not None, 120,
                  "a worker")  # fmt: skip
        workers = _workers(proc.pid)
        if when == "mid-replay":  # it started up and replays its partition
            start = _cpu_s(workers[0])
            _wait_for(lambda: _cpu_s(workers[0]) - start >= 1.5 + (start < 1.0),
                      120, "the worker's replay")  # fmt: skip
        os.kill(workers[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    records = json.loads(target.read_text())
    assert [r["index"] for r in records] == list(range(600))
    assert all(["x-replayed", "yes"] in r["request"]["headers"]["after"]
               for r in records)  # fmt: skip
    assert "600 flows replayed" in out

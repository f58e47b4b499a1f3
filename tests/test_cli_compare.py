"""``wasmkit compare A B CAPTURE``: a subprocess over real filters and the sample capture."""

from __future__ import annotations

import json

from tests.replay.test_compare import ADD_NO, DENY_IF_CONFIGURED
from tests.replay.test_run import ADD
from tests.test_cli_errors import FLOW, one_line, wasmkit_cli
from wasmkit.replay.compare import FIELDS, compare


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_two_builds_print_the_differing_flows_and_their_fields(tmp_path):
    old = _write(tmp_path, "old.wat", ADD)
    new = _write(tmp_path, "new.wat", ADD_NO)
    proc = wasmkit_cli("compare", old, new, str(FLOW))
    assert proc.returncode == 1, proc.stderr  # some flows differ
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "#",
        "method",
        "path",
        "old.wat",
        "new.wat",
        "differs",
        "in",
    ]
    expected = compare(old, new, FLOW)
    rows = lines[1:-1]
    assert [int(r.split()[0]) for r in rows] == [f.index for f in expected.differing]
    assert rows and all(r.endswith("  request headers") for r in rows)
    assert lines[-1] == (
        f"17 flows compared, {len(expected.differing)} differ: "
        f"old.wat = {old}, new.wat = {new}"
    )


def test_one_filter_two_configurations(tmp_path):
    deny = _write(tmp_path, "deny.wat", DENY_IF_CONFIGURED)
    proc = wasmkit_cli(
        "compare", deny, deny, str(FLOW), "--config-b", "deny", "--limit", "4"
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    # One path twice: the sides stay apart.
    assert "deny.wat (a)" in lines[0] and "deny.wat (b)" in lines[0]
    assert len(lines) == 1 + 4 + 1
    expected = compare(deny, deny, FLOW, config_b="deny", limit=4).differing
    for row, flow in zip(lines[1:-1], expected, strict=True):
        assert "403 local reply" in row
        assert flow.fields[:2] == ["status", "action"] and "local reply" in flow.fields
        assert row.endswith("  " + ", ".join(flow.fields))
    assert lines[-1].startswith("4 flows compared, 4 differ: ")


def test_json_and_the_replay_options(tmp_path):
    old = _write(tmp_path, "old.wat", ADD)
    new = _write(tmp_path, "new.wat", ADD_NO)
    proc = wasmkit_cli(
        "compare",
        old,
        new,
        str(FLOW),
        "--json",
        "--filter",
        "~m POST",
        "--chunk-size",
        "7",
    )
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["a"], doc["b"]) == ("old.wat", "new.wat")
    assert doc["filters"] == [old, new]
    posts = compare(old, new, FLOW, filter_expr="~m POST")
    assert doc["flows"] == len(posts.flows) == doc["differing"] > 0
    assert all(row["method"] == "POST" for row in doc["rows"])
    assert {row["fields"] for row in doc["rows"]} == {"request headers"}
    assert set(doc["rows"][0]) >= {"index", "status_a", "status_b", "fields"}
    assert all(set(row["fields"].split(", ")) <= set(FIELDS) for row in doc["rows"])


def test_identical_filters_exit_zero(tmp_path):
    one = _write(tmp_path, "one.wat", ADD)
    two = _write(tmp_path, "two.wat", ADD)
    proc = wasmkit_cli("compare", one, two, str(FLOW), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("17 flows compared, 0 differ: ")


def test_bad_inputs_are_one_line(tmp_path):
    one = _write(tmp_path, "one.wat", ADD)
    line = one_line(wasmkit_cli("compare", one, "/nonexistent.wasm", str(FLOW)))
    assert line == "wasmkit compare: filter /nonexistent.wasm: no such file or folder"
    one_line(
        wasmkit_cli("compare", one, one, "/nonexistent.flow"),
        "wasmkit compare:",
        "/nonexistent.flow",
    )
    deny = _write(tmp_path, "deny.wat", DENY_IF_CONFIGURED)
    one_line(
        wasmkit_cli("compare", deny, deny, str(FLOW), "--config-a", "@/nonexistent"),
        "/nonexistent",
    )

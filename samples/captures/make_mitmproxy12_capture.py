#!/usr/bin/env python3
"""Record the sample API through mitmproxy 12.3's mitmdump.

The same servers, requests and checks as ``make_captures.py`` (imported from
beside this file), but for the 1 MiB response, recorded by the ``mitmdump`` of
the Python running this script, which must be mitmproxy 12.3. Writes:

* ``api-mitmproxy12.flow`` - every exchange, as mitmdump 12.3 wrote it with ``-w``;
* ``api-mitmproxy12.har``  - the same traffic, as its ``hardump`` wrote it;
* ``mitmproxy12.md``       - the mitmproxy version and one line per flow.

wasmkit's tests read these under mitmproxy 11 and 12, as they read ``api.flow``
(written by mitmproxy 11) under both.

Usage (mitmproxy 12 needs Python >= 3.12)::

    make venv PYTHON=/root/.pyenv/versions/3.12.1/bin/python VENV=.venv312
    .venv312/bin/python samples/captures/make_mitmproxy12_capture.py [--out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import make_captures as base  # noqa: E402 (beside this file)

WANT = "12.3."
"""The mitmproxy release line that must write these files."""
NAMES = ("api-mitmproxy12.flow", "api-mitmproxy12.har", "mitmproxy12.md")


def _exchanges() -> list[base.Exchange]:
    return [ex for ex in base._exchanges() if ex.path != "/large"]


def _mitmdump_version() -> str:
    proc = subprocess.run(
        [base._mitmdump(), "--version"],
        capture_output=True,
        text=True,
        timeout=base.TIMEOUT * 3,
        check=True,
    )
    first = (proc.stdout.strip().splitlines() or [""])[0]  # "Mitmproxy: 12.3.1"
    return first.split(":", 1)[-1].strip()


def _table(exchanges: list[base.Exchange], version: str) -> str:
    rows = "\n".join(
        f"| {i} | {ex.method} | {'https' if ex.tls else 'http'} | `{ex.path}` | "
        f"{'error' if ex.expect_status is None else ex.expect_status} | {ex.title} |"
        for i, ex in enumerate(exchanges)
    )
    return f"""# The sample API recorded by mitmproxy {version}

`api-mitmproxy12.flow` and `api-mitmproxy12.har` were written by mitmdump
{version} (`make_mitmproxy12_capture.py`): the traffic of `api.flow` but for the
1 MiB response, so flows after #12 are one lower than in `api.flow`.

| # | method | scheme | path | status | what it shows |
|---|--------|--------|------|--------|---------------|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    """Make the captures; write them to ``--out`` (default: this folder)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    args = parser.parse_args(argv)
    version = _mitmdump_version()
    if not version.startswith(WANT):
        raise SystemExit(
            f"{base._mitmdump()} is mitmproxy {version}, not {WANT}x: run this "
            "from a venv with mitmproxy 12.3 (Python >= 3.12)"
        )
    start = time.monotonic()
    exchanges = _exchanges()
    with tempfile.TemporaryDirectory(prefix="wasmkit-captures-") as tmp:
        flow_path, har_path, _ = base._run(Path(tmp), exchanges)
        base._check(flow_path, har_path, exchanges)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(flow_path, out / NAMES[0])
        shutil.copyfile(har_path, out / NAMES[1])
        (out / NAMES[2]).write_text(_table(exchanges, version))
    print(
        f"wrote {len(exchanges)} flows (mitmproxy {version}) to {out} "
        f"in {time.monotonic() - start:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

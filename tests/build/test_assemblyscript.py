"""The AssemblyScript adapter: asc's diagnostics, missing Node.js."""

from __future__ import annotations

import pytest

from wasmkit.build import assemblyscript, build
from wasmkit.build.toolchain import Diagnostic
from wasmkit.errors import CompileError, ToolchainNotFoundError

ASC_OUTPUT = """\
ERROR TS2304: Cannot find name 'z'.

 let q: i32 = z;
              ~
 in tmp/cells/assembly/index.ts(7,14)

WARNING AS201: Conversion from type 'usize' to 'u32' will require an explicit cast.

       return utoa32(this, radix);
                     ~~~~
 in ~lib/number.ts(221,21)

FAILURE 1 compile error(s)
"""


def test_asc_diagnostics_are_parsed():
    errors, warnings = assemblyscript._diagnostics(ASC_OUTPUT)
    assert errors == [
        Diagnostic("/tmp/cells/assembly/index.ts", 7, 14, "Cannot find name 'z'.")
    ]
    assert warnings[0].file == "~lib/number.ts"


def test_missing_node_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainNotFoundError) as info:
        build(assemblyscript.TINY_FILTER, "assemblyscript")
    text = str(info.value)
    assert "'node' was not found on PATH" in text
    assert "apt-get install -y nodejs npm" in text
    assert "scripts/setup-assemblyscript.sh" in text


@pytest.mark.toolchain("asc")
def test_library_warnings_are_not_the_users():
    artifact = build(assemblyscript.TINY_FILTER + "let unused: i32 = 1;\n")
    assert "in ~lib/number.ts" in artifact.log  # asc warns about its own library
    assert artifact.warnings == ()


@pytest.mark.toolchain("asc")
def test_asconfig_is_not_applied(tmp_path):
    # Fixed options: a broken asconfig.json next to the entry changes nothing.
    (tmp_path / "assembly").mkdir()
    (tmp_path / "assembly" / "index.ts").write_text(assemblyscript.TINY_FILTER)
    (tmp_path / "asconfig.json").write_text("{ not json")
    artifact = build(tmp_path)
    assert artifact.lang == "assemblyscript"
    assert artifact.wasm.startswith(b"\0asm")


@pytest.mark.toolchain("asc")
def test_error_in_a_project_file_names_it(tmp_path):
    (tmp_path / "assembly").mkdir()
    entry = tmp_path / "assembly" / "index.ts"
    entry.write_text(assemblyscript.TINY_FILTER.replace("return new", "return nw"))
    with pytest.raises(CompileError) as info:
        build(tmp_path)
    (diag,) = info.value.diagnostics
    line = assemblyscript.TINY_FILTER.splitlines().index(
        "    return new Context(context_id, this);"
    )
    assert (diag[0], diag[1]) == (str(entry), line + 1)

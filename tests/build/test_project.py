"""What to build: language detection, generated projects, digests (no compiler)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wasmkit.build import project
from wasmkit.build.languages import normalize
from wasmkit.build.toolchain import TEMPLATES, TEXT_NAME, Diagnostic
from wasmkit.errors import BuildError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "filters" / "add_headers"

RUST_TEXT = "use proxy_wasm::traits::*;\nfn x() {}\n"
GO_TEXT = "package main\n\nfunc main() {}\n"
AS_TEXT = 'export * from "@solo-io/proxy-runtime/proxy";\n'


@pytest.mark.parametrize("lang", ["assemblyscript", "rust", "go"])
def test_sample_folders_are_detected_by_manifest(lang):
    p = project.resolve(SAMPLE / lang)
    assert p.lang == lang
    assert p.root == (SAMPLE / lang).resolve()
    assert p.files is None
    assert p.name == "add_headers"
    assert len(p.digest) == 64


@pytest.mark.parametrize(
    ("manifest", "lang"),
    [
        ("Cargo.toml", "rust"),
        ("go.mod", "go"),
        ("package.json", "assemblyscript"),
        ("asconfig.json", "assemblyscript"),
        ("assembly/index.ts", "assemblyscript"),
    ],
)
def test_detect_folder(tmp_path, manifest, lang):
    (tmp_path / manifest).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / manifest).write_text("")
    assert project.detect_folder(tmp_path) == lang


def test_folder_of_two_languages_needs_lang(tmp_path):
    (tmp_path / "Cargo.toml").write_text("")
    (tmp_path / "go.mod").write_text("")
    with pytest.raises(ValueError, match="rust and a go project: pass lang="):
        project.resolve(tmp_path)


def test_folder_without_manifest(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the language"):
        project.resolve(tmp_path)


def test_folder_missing_lockfile_says_how_to_make_one(tmp_path):
    (tmp_path / "Cargo.toml").write_text("[package]\nname = 'x'\n")
    with pytest.raises(BuildError, match=r"no Cargo\.lock in .*generate-lockfile"):
        project.resolve(tmp_path)
    (tmp_path / "Cargo.toml").unlink()
    (tmp_path / "go.mod").write_text("module x\n")
    with pytest.raises(BuildError, match=r"no go\.sum in .*go mod tidy"):
        project.resolve(str(tmp_path))


def test_files_inside_projects_build_the_project():
    assert project.resolve(SAMPLE / "go" / "main.go").root == (SAMPLE / "go").resolve()
    lib = SAMPLE / "rust" / "src" / "lib.rs"
    assert project.resolve(lib).root == (SAMPLE / "rust").resolve()
    entry = SAMPLE / "assemblyscript" / "assembly" / "index.ts"
    assert project.resolve(str(entry)).root == (SAMPLE / "assemblyscript").resolve()


@pytest.mark.parametrize(
    ("name", "text", "lang", "main"),
    [
        ("f.rs", RUST_TEXT, "rust", "src/lib.rs"),
        ("f.go", GO_TEXT, "go", "main.go"),
        ("f.ts", AS_TEXT, "assemblyscript", "assembly/index.ts"),
    ],
)
def test_lone_file_is_built_in_a_generated_project(tmp_path, name, text, lang, main):
    source = tmp_path / name
    source.write_text(text)
    p = project.resolve(source)
    assert p.lang == lang
    assert p.files is not None
    assert p.files[main] == text.encode()
    # Diagnostics in the generated file point back at the user's file.
    located = p.locate(Diagnostic(main, 3, 1, "boom"))
    assert located == Diagnostic(str(source), 3, 1, "boom")


@pytest.mark.parametrize(
    ("text", "lang"),
    [(RUST_TEXT, "rust"), (GO_TEXT, "go"), (AS_TEXT, "assemblyscript")],
)
def test_source_text_language_is_guessed(text, lang):
    p = project.resolve(text)
    assert p.lang == lang
    main = {
        "rust": "src/lib.rs",
        "go": "main.go",
        "assemblyscript": "assembly/index.ts",
    }
    assert p.shown == {main[lang]: TEXT_NAME}


def test_source_text_in_an_unclear_language_needs_lang():
    with pytest.raises(ValueError, match="pass lang="):
        project.resolve("int main() { return 0; }\n")
    assert project.resolve("int main() {}\n", "rust").lang == "rust"


def test_generated_project_is_content_addressed_and_named_by_root_id(build_cache):
    a = project.resolve(GO_TEXT, root_id="My Filter-2")
    b = project.resolve(GO_TEXT, root_id="My Filter-2")
    c = project.resolve(GO_TEXT + "\n")
    assert a.root == b.root and a.digest == b.digest
    assert c.digest != a.digest
    assert a.name == "my_filter_2"
    assert a.root.parent == build_cache / "projects" / "go"
    assert a.files is not None
    assert b"module wasmkit/filters/my_filter_2\n" in a.files["go.mod"]
    root = a.materialize()
    assert (root / "main.go").read_text() == GO_TEXT
    assert a.materialize() == root  # written once


def test_project_names():
    assert project.project_name(None) == "filter"
    assert project.project_name("add_headers") == "add_headers"
    assert project.project_name("7up") == "f_7up"
    assert project.project_name("--") == "filter"


def test_languages_and_aliases():
    assert normalize("AS") == "assemblyscript"
    assert normalize("rs") == "rust"
    assert normalize("golang") == "go"
    assert normalize("tinygo") == "tinygo"
    with pytest.raises(ValueError, match="unknown language 'cobol'"):
        normalize("cobol")
    with pytest.raises(ValueError, match="unknown language"):
        project.resolve(SAMPLE / "go", "cobol")


def test_missing_paths_and_bad_types():
    with pytest.raises(FileNotFoundError):
        project.resolve("no/such/filter.rs")
    with pytest.raises(FileNotFoundError):
        project.resolve(Path("no/such/folder"))
    with pytest.raises(ValueError, match="empty"):
        project.resolve("   \n")
    with pytest.raises(TypeError):
        project.resolve(b"package main\n")  # type: ignore[arg-type]


def test_digest_covers_every_source_file_but_not_build_output(tmp_path):
    shutil.copytree(SAMPLE / "go", tmp_path / "m")
    root = tmp_path / "m"
    before = project.digest_tree(root, "go")
    (root / "out.wasm").write_bytes(b"\0asm")
    (root / ".hidden").write_text("x")
    (root / "target").mkdir()
    (root / "target" / "x.go").write_text("package x")
    assert project.digest_tree(root, "go") == before
    (root / "README.md").write_text("notes")
    assert project.digest_tree(root, "go") != before


def test_templates_are_the_add_headers_sample_renamed():
    for lang, names in (
        ("rust", ("Cargo.toml", "Cargo.lock")),
        ("go", ("go.mod", "go.sum")),
    ):
        for name in names:
            assert (TEMPLATES / lang / name).read_bytes() == (
                SAMPLE / lang / name
            ).read_bytes()
    p = project.resolve(RUST_TEXT, root_id="cell")
    assert p.files is not None
    toml = p.files["Cargo.toml"].decode()
    lock = p.files["Cargo.lock"].decode()
    assert 'name = "cell"' in toml and "add_headers" not in toml
    assert '[[package]]\nname = "cell"\nversion = "0.1.0"' in lock
    assert "add_headers" not in lock

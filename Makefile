# wasmkit: `make demo` sets everything up and runs the demo; `make test` runs the suite.
#
# PYTHON is the interpreter the venv is made from, VENV the venv's folder; a
# second Python gets its own venv beside the first, sharing the toolchains,
# the built samples and the caches:
#   make test PYTHON=/root/.pyenv/versions/3.12.1/bin/python VENV=.venv312
# `make test-all` runs the suite on both (what CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The second interpreter of `make test-all` (Python >= 3.12: mitmproxy 12).
PYTHON2 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12.*/bin/python) \
	$(wildcard $(HOME)/.pyenv/versions/3.13.*/bin/python) python3.12 python3.13)
VENV2 ?= .venv312
export WASMKIT_CACHE ?= $(HOME)/.cache/wasmkit
STAMP := $(VENV)/.stamp-install

.PHONY: demo test test-all venv toolchains samples peers lint bench clean

demo: venv toolchains samples
	$(VENV)/bin/wasmkit demo

# JupyterLab on the tutorials in notebooks/. JUPYTER_PATH puts the venv's
# "python3" kernelspec first (over any user one): its kernels run the venv's
# Python, so `%load_ext wasmkit` works. allow_root: the set-up runs as root.
# Ctrl-C stops the server.
.PHONY: lab
lab: venv toolchains
	JUPYTER_PATH=$(abspath $(VENV))/share/jupyter $(VENV)/bin/jupyter lab \
		--ServerApp.root_dir=notebooks --ServerApp.allow_root=True

test: venv toolchains samples browser peers
	$(VENV)/bin/ruff check wasmkit tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest

# The suite on PYTHON (mitmproxy 11 on 3.11) with the native host core, then
# on PYTHON2 (mitmproxy 12) with the pure-Python reference host.
test-all:
	$(MAKE) test
	WASMKIT_HOST=python $(MAKE) test PYTHON=$(PYTHON2) VENV=$(VENV2)

# Debian's Chromium for the real-browser test (tests/browser), checked to
# launch under the venv's playwright.
.PHONY: browser
browser: venv
	PYTHON=$(abspath $(PY)) bash scripts/setup-browser.sh >/dev/null

# Bytecode for the kit's own modules, written here once: this machine's
# environment sets PYTHONDONTWRITEBYTECODE, and every replay worker process
# would otherwise compile them all again (a third of its start-up).
venv: $(STAMP)
	@$(SAME_PYTHON)
	$(PY) -m compileall -q wasmkit
	$(MAKE) --no-print-directory native

# The native host core (wasmkit/host/_native/core.c), compiled by cc into the
# kit cache once per source and Python (about a second); without a compiler
# the pure-Python host runs (wasmkit prints a one-line notice).
.PHONY: native
native: $(STAMP)
	@$(PY) -c 'from wasmkit.host import native; raise SystemExit(native.main(["build"]))' >/dev/null \
		|| echo "make: no native host core: wasmkit runs its pure-Python host" >&2

# A venv made by another Python than PYTHON is refused rather than mixed.
VERSION_OF = $(1) -c 'import sys; print(*sys.version_info[:3], sep=".")'
SAME_PYTHON = want="$$($(call VERSION_OF,$(PYTHON)))"; have="$$($(call VERSION_OF,$(PY)))"; \
	[[ "$$want" == "$$have" ]] || { echo "$(VENV) has Python $$have but PYTHON=$(PYTHON)" \
	"is $$want: give another VENV= or remove $(VENV)" >&2; exit 1; }

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "wasmkit needs Python >= 3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(SAME_PYTHON)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Compilers for the sample filters: AssemblyScript (npm ci from a committed
# lockfile), Rust (Debian's wasm32 std, crates vendored once) and Go (>= 1.24,
# modules downloaded once).
toolchains:
	bash scripts/setup-assemblyscript.sh
	bash scripts/setup-rust-modern.sh
	bash scripts/setup-rust.sh
	bash scripts/setup-go.sh

samples: toolchains
	bash scripts/build-samples.sh build/samples

# The hosts benchmarks/bench_peers.py runs beside wasmkit: the Go SDK's
# proxytest (wasm mode) and a minimal C host on the wheel's libwasmtime.
peers: venv toolchains
	PYTHON=$(abspath $(PY)) bash scripts/build-peers.sh build/peers

bench: venv samples peers
	$(PY) benchmarks/bench_peers.py
	$(PY) benchmarks/bench_targets.py
	$(PY) benchmarks/bench_host.py
	$(PY) benchmarks/bench_build.py
	$(PY) benchmarks/bench_load.py
	$(PY) benchmarks/bench_capture.py
	$(PY) benchmarks/bench_replay.py
	$(PY) benchmarks/bench_body.py --commit 309c234
	$(PY) benchmarks/bench_memory.py

clean:
	rm -rf build $(VENV) $(VENV2)

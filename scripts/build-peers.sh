#!/usr/bin/env bash
# Build the peer hosts that benchmarks/bench_peers.py runs beside wasmkit.
#
#   scripts/build-peers.sh [OUT_DIR]      (default: build/peers)
#
# 1. OUT_DIR/proxytest-peer: benchmarks/peers/proxytest, the proxy-wasm Go
#    SDK's proxytest in wasm mode (wazero), built natively by the Go on PATH
#    with the modules that setup-go.sh downloads through the Go module proxy
#    into the kit's module cache (then GOPROXY=off).
# 2. OUT_DIR/wasmtime-floor: benchmarks/peers/floor/floor.c, a minimal host in
#    C on the libwasmtime that the venv's `wasmtime` wheel ships, compiled by
#    cc. The C headers of the same wasmtime version come from crates.io (the
#    wasmtime-c-api-impl crate, fetched once by cargo into a temporary
#    CARGO_HOME; only its include/ is kept, in
#    ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/peers/), with the conf.h that its
#    build script would write for the wheel's feature set.
#
# Each binary is rebuilt only when its inputs changed (a stamp of their
# sha256 beside it), so a second run is done in well under a second.
# Environment: PYTHON (the venv's python, default .venv/bin/python),
# WASMKIT_CACHE, CARGO (default: the kit's modern cargo, else cargo on PATH),
# CC (default cc). Progress goes to stderr.
set -euo pipefail

die() { echo "build-peers: error: $*" >&2; exit 1; }
note() { echo "build-peers: $*" >&2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="${1:-$root/build/peers}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"
python="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$python" ]] || die "no Python at $python (run 'make venv', or set PYTHON)"

# Prints the sha256 of the named files and strings, one digest.
digest() {
  { for f in "$@"; do if [[ -f "$f" ]]; then sha256sum "$f"; else echo "$f"; fi; done; } \
    | sha256sum | cut -c1-64
}

up_to_date() { [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]; }

# ------------------------------------------------------------ proxytest ----
src="$root/benchmarks/peers/proxytest"
target="$out/proxytest-peer"
command -v go >/dev/null 2>&1 || die "the 'go' command is not on PATH (see scripts/setup-go.sh)"
key="$(digest "$src/main.go" "$src/go.mod" "$src/go.sum" "$(go env GOVERSION)")"
if up_to_date "$target" "$key"; then
  note "up to date $target"
else
  started=$SECONDS
  modcache="$(bash "$here/setup-go.sh" "$src")"
  tmp="$(mktemp "$target.XXXXXX")"
  (
    cd "$src"
    GOMODCACHE="$modcache" GOCACHE="$cache/gocache" GOPROXY=off GOFLAGS=-modcacherw \
      GOWORK=off GOTOOLCHAIN="${GOTOOLCHAIN:-local}" CGO_ENABLED=0 \
      go build -trimpath -buildvcs=false -o "$tmp" .
  ) || { rm -f "$tmp"; die "go build failed in $src (errors above)"; }
  chmod 755 "$tmp"
  mv -f "$tmp" "$target"
  echo "$key" >"$target.stamp"
  note "built $target in $((SECONDS - started)) s"
fi

# ----------------------------------------------------------------- floor ----
read -r wheel_dir version < <("$python" -c '
import importlib.metadata, os, wasmtime
print(os.path.join(os.path.dirname(wasmtime.__file__), "linux-x86_64"),
      importlib.metadata.version("wasmtime"))') || die "$python cannot import wasmtime"
lib="$wheel_dir/_libwasmtime.so"
[[ -f "$lib" ]] || die "the wasmtime wheel has no $lib (only linux-x86_64 is supported)"

headers="$cache/peers/wasmtime-c-api-$version/include"
if [[ ! -f "$headers/wasmtime/conf.h" ]]; then
  cargo="${CARGO:-}"
  if [[ -z "$cargo" ]]; then
    if [[ -x "$cache/rust-modern/current/bin/cargo" ]]; then
      cargo="$cache/rust-modern/current/bin/cargo"
    else
      cargo="$(command -v cargo)" || die "no cargo to fetch the wasmtime C headers (make toolchains)"
    fi
  fi
  note "fetching the C headers of wasmtime $version (crate wasmtime-c-api-impl) from crates.io"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/src"
  : >"$work/src/lib.rs"
  cat >"$work/Cargo.toml" <<EOF
[package]
name = "wasmkit-headers"
version = "0.0.0"
edition = "2021"

[dependencies]
wasmtime-c-api-impl = { version = "=$version", default-features = false }
EOF
  CARGO_HOME="$work/cargo-home" "$cargo" fetch --quiet --manifest-path "$work/Cargo.toml" \
      --target x86_64-unknown-linux-gnu >&2 \
    || die "'cargo fetch' of wasmtime-c-api-impl $version failed (is crates.io reachable?)"
  crate="$(compgen -G "$work/cargo-home/registry/src/*/wasmtime-c-api-impl-$version" | head -n1)" \
    || die "cargo fetched no wasmtime-c-api-impl-$version"
  [[ -f "$crate/include/wasmtime/conf.h.in" ]] || die "$crate has no include/wasmtime/conf.h.in"
  staging="$cache/peers/.wasmtime-c-api-$version.tmp"
  rm -rf "$staging"
  mkdir -p "$staging"
  cp -r "$crate/include" "$staging/include"
  # conf.h as the crate's build script writes it: the wheel's libwasmtime is
  # built with the default features (the struct layouts depend on GC).
  features="PROFILING WAT CACHE PARALLEL_COMPILATION WASI LOGGING COREDUMP ADDR2LINE"
  features+=" DEMANGLE THREADS GC GC_DRC GC_NULL ASYNC CRANELIFT POOLING_ALLOCATOR"
  features+=" COMPONENT_MODEL"
  sed_args=()
  for f in $features; do sed_args+=(-e "s/^#cmakedefine WASMTIME_FEATURE_$f\$/#define WASMTIME_FEATURE_$f/"); done
  sed "${sed_args[@]}" -e 's|^#cmakedefine \(.*\)$|/* #undef \1 */|' \
    "$crate/include/wasmtime/conf.h.in" >"$staging/include/wasmtime/conf.h"
  rm -rf "$cache/peers/wasmtime-c-api-$version"
  mv "$staging" "$cache/peers/wasmtime-c-api-$version"
  rm -rf "$work"
  trap - EXIT
fi

src="$root/benchmarks/peers/floor/floor.c"
target="$out/wasmtime-floor"
cc="${CC:-cc}"
key="$(digest "$src" "$lib" "$headers/wasmtime.h" "$($cc --version | head -n1)")"
if up_to_date "$target" "$key"; then
  note "up to date $target"
else
  tmp="$(mktemp "$target.XXXXXX")"
  "$cc" -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -I"$headers" -o "$tmp" "$src" \
      "$lib" -Wl,-rpath,"$wheel_dir" \
    || { rm -f "$tmp"; die "$cc failed on $src (errors above)"; }
  chmod 755 "$tmp"
  mv -f "$tmp" "$target"
  echo "$key" >"$target.stamp"
  note "built $target (wasmtime $version)"
fi

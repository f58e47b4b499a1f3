#!/usr/bin/env bash
# Prepare the Go toolchain for the kit's proxy-wasm filters.
#
#   scripts/setup-go.sh [MODULE_DIR...]
#
# 1. Compiler: Go >= 1.24 builds proxy-wasm modules by itself
#    (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, //go:wasmexport);
#    TinyGo is not needed. The `go` on PATH is checked, nothing is installed.
# 2. Modules: the modules of every go.mod under samples/filters/*/go, and of
#    each MODULE_DIR given, are downloaded with `go mod download` into the kit's
#    module cache ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/gomod, so that
#    scripts/build-go.sh can build offline (GOPROXY=off). Every module needs a
#    committed go.sum (make one with `go mod tidy` in its folder).
#    When every module is already in that cache (checked offline, with
#    GOPROXY=off) nothing is downloaded, so a second run is near-instant.
#
# Environment: WASMKIT_CACHE (see above); GOTOOLCHAIN is honoured when set
# (default: local, so the go command never fetches another Go by itself).
# Prints the module cache folder on stdout; progress goes to stderr.
set -euo pipefail

die() { echo "setup-go: error: $*" >&2; exit 1; }
note() { echo "setup-go: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"
min_minor=24

# The kit's own Go settings; a user's GOFLAGS (e.g. -mod=mod or -mod=vendor)
# or go.work must not change what is downloaded or built.
export GOMODCACHE="$cache/gomod"
export GOCACHE="$cache/gocache"
export GOFLAGS=-modcacherw
export GOWORK=off
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# ---------------------------------------------------------------- compiler --
command -v go >/dev/null 2>&1 \
  || die "the 'go' command is not on PATH: install Go >= 1.$min_minor (https://go.dev/doc/install, or Debian's golang-go where it is new enough) and run this script again"
goversion="$(go env GOVERSION 2>/dev/null)" \
  || die "'go env GOVERSION' failed: is $(command -v go) a working Go >= 1.$min_minor?"
# go1.26.8, go1.24rc1, go1.25.0 X:foo, devel go1.27-abcdef ...
if [[ "$goversion" =~ go1\.([0-9]+) ]]; then
  minor="${BASH_REMATCH[1]}"
else
  die "cannot read the Go version from '$goversion' ($(command -v go))"
fi
if (( minor < min_minor )); then
  die "$(command -v go) is $goversion, but proxy-wasm filters need Go >= 1.$min_minor (for GOOS=wasip1 -buildmode=c-shared with //go:wasmexport): install a newer Go"
fi
note "compiler: $goversion ($(command -v go))"

# ----------------------------------------------------------------- modules --
module_dirs=()
for d in "$repo_root"/samples/filters/*/go; do
  [[ -f "$d/go.mod" ]] && module_dirs+=("$d")
done
for arg in "$@"; do
  d="$(cd "$arg" 2>/dev/null && pwd)" || die "no such directory: $arg"
  [[ -f "$d/go.mod" ]] || die "no go.mod in $d"
  module_dirs+=("$d")
done
[[ ${#module_dirs[@]} -gt 0 ]] || die "no Go modules found under $repo_root/samples/filters/*/go"

mkdir -p "$cache"
# One setup at a time per cache (build-go.sh runs this script too).
exec 9>"$cache/gomod.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

# Deduplicate (a MODULE_DIR may be one of the samples).
declare -A seen=()
for d in "${module_dirs[@]}"; do
  [[ -n "${seen[$d]:-}" ]] && continue
  seen[$d]=1
  [[ -f "$d/go.sum" ]] \
    || die "$d/go.sum is missing: commit one (in $d: go mod tidy)"
  # Offline first: succeeds without touching the network when every module
  # (and its go.mod) is already in the cache.
  if (cd "$d" && GOPROXY=off go mod download >/dev/null 2>&1); then
    note "modules of $d up to date in $GOMODCACHE"
    continue
  fi
  note "downloading the modules of $d into $GOMODCACHE"
  # go.sum is committed, so every download is checked against it.
  (cd "$d" && go mod download >&2) \
    || die "'go mod download' failed in $d (is the Go module proxy reachable? do go.mod and go.sum match? try 'go mod tidy' there)"
  (cd "$d" && GOPROXY=off go mod download) \
    || die "the modules of $d are still not all in $GOMODCACHE after 'go mod download'"
done

echo "$GOMODCACHE"

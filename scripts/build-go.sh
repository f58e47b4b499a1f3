#!/usr/bin/env bash
# Build a Go proxy-wasm filter offline with Go >= 1.24 (no TinyGo).
#
#   scripts/build-go.sh MODULE_DIR OUT.wasm [GO_BUILD_ARG...]
#
# MODULE_DIR holds go.mod, a committed go.sum and a main package that imports
# github.com/proxy-wasm/proxy-wasm-go-sdk. Its modules come from the kit's
# module cache filled by setup-go.sh (run here first: near-instant and offline
# when already downloaded), and
#   GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o OUT.wasm .
# builds it with GOPROXY=off, GOFLAGS=-modcacherw,
# GOMODCACHE=${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/gomod and
# GOCACHE=${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/gocache, so nothing is written
# into MODULE_DIR (go.mod and go.sum are only read: the build fails rather than
# update them). -trimpath and -buildvcs=false keep the module's bytes
# independent of where the repository and the cache live and of git state.
# GO_BUILD_ARGs go to `go build` before `-o` (e.g. -tags=no_fs_access).
# Compiler errors are printed on stderr and the exit status is non-zero on
# failure; OUT.wasm is replaced only when the build succeeds.
set -euo pipefail

die() { echo "build-go: error: $*" >&2; exit 1; }

[[ $# -ge 2 ]] || { echo "usage: $0 MODULE_DIR OUT.wasm [GO_BUILD_ARG...]" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module_dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such directory: $1"
[[ -f "$module_dir/go.mod" ]] || die "no go.mod in $module_dir"
[[ -f "$module_dir/go.sum" ]] || die "no go.sum in $module_dir (in $module_dir: go mod tidy, then commit it)"

out_dir="$(dirname "$2")"
mkdir -p "$out_dir"
out="$(cd "$out_dir" && pwd)/$(basename "$2")"
shift 2
extra_args=("$@")

cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"

# Checks the Go version and fills the module cache (prints its folder).
modcache="$("$here/setup-go.sh" "$module_dir")"
[[ -d "$modcache" ]] || die "module cache $modcache is missing after setup-go.sh"

export GOMODCACHE="$modcache"
export GOCACHE="$cache/gocache"
export GOPROXY=off
export GOFLAGS=-modcacherw
export GOWORK=off
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0
mkdir -p "$GOCACHE"

tmp="$(mktemp "$out.XXXXXX.tmp")"
trap 'rm -f "$tmp"' EXIT

status=0
(
  cd "$module_dir"
  go build -buildmode=c-shared -trimpath -buildvcs=false ${extra_args[@]+"${extra_args[@]}"} -o "$tmp" .
) || status=$?
[[ $status -eq 0 ]] || die "go build failed for $module_dir (exit $status; compiler errors above)"
[[ -s "$tmp" ]] || die "go build wrote no module for $module_dir (is it a main package?)"

chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "build-go: wrote $out ($(wc -c <"$out") bytes, $(go env GOVERSION) $GOOS/$GOARCH)" >&2

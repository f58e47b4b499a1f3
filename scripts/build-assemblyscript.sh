#!/usr/bin/env bash
# Build an AssemblyScript proxy-wasm filter with the kit's pinned toolchain.
#
#   scripts/build-assemblyscript.sh SRC_DIR OUT.wasm
#
# SRC_DIR holds assembly/index.ts (the entry); it may be anywhere and needs no
# node_modules of its own: packages such as @solo-io/proxy-runtime resolve from
# the toolchain installed by setup-assemblyscript.sh (run here, near-instant when
# already installed). The compiler options are fixed here; an asconfig.json in
# SRC_DIR is not applied.
# OUT.wasm is replaced only when the build succeeds.
set -euo pipefail

die() { echo "build-assemblyscript: error: $*" >&2; exit 1; }

[[ $# -eq 2 ]] || { echo "usage: $0 SRC_DIR OUT.wasm" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src_dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such directory: $1"
entry="$src_dir/assembly/index.ts"
[[ -f "$entry" ]] || die "entry file not found: $entry"

out_dir="$(dirname "$2")"
mkdir -p "$out_dir"
out="$(cd "$out_dir" && pwd)/$(basename "$2")"

toolchain="$("$here/setup-assemblyscript.sh")"
asc="$toolchain/node_modules/.bin/asc"
[[ -x "$asc" ]] || die "asc not found at $asc"

tmp="$(mktemp "$out.XXXXXX.tmp")"
trap 'rm -f "$tmp"' EXIT

# Imports such as "@solo-io/proxy-runtime" resolve through --path to the pinned
# toolchain. asc also looks in node_modules folders above its base directory
# first; with base directory "/" a stray node_modules near SRC_DIR cannot
# shadow the pinned packages. --config /dev/null: no asconfig.json is applied.
# asc prints file names relative to "/", so a leading "/" is put back.
status=0
{ "$asc" "$entry" \
    --baseDir / \
    --config /dev/null \
    --path "$toolchain/node_modules" \
    --binaryFile "$tmp" \
    --use abort=abort_proc_exit \
    --optimize \
    --noColors \
    2>&1 1>&3 | sed -E 's#^( in )([^~/.])#\1/\2#' >&2; } 3>&1 || status=$?
[[ $status -eq 0 ]] || die "asc failed for $entry"
[[ -s "$tmp" ]] || die "asc produced no output for $entry"

chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "build-assemblyscript: wrote $out ($(wc -c <"$out") bytes)" >&2

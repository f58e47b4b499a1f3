#!/usr/bin/env bash
# Install the pinned AssemblyScript toolchain (assemblyscript 0.14.13 and
# @solo-io/proxy-runtime 0.1.8, from toolchains/assemblyscript/package-lock.json)
# with `npm ci` into ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/toolchains/assemblyscript.
#
#   scripts/setup-assemblyscript.sh
#
# Idempotent: when the installed package.json and package-lock.json equal the
# committed ones and node_modules is there, nothing is installed.
# Prints the toolchain folder on stdout; progress goes to stderr.
set -euo pipefail

die() { echo "setup-assemblyscript: error: $*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$repo_root/toolchains/assemblyscript"
dest="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/toolchains/assemblyscript"

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "'$tool' was not found on PATH. The AssemblyScript toolchain needs Node.js with npm (tested with Node 20); install them (e.g. 'apt-get install nodejs npm') and run this script again."
done

for f in package.json package-lock.json; do
  [[ -f "$src/$f" ]] || die "missing $src/$f"
done

installed() {
  [[ -d "$dest/node_modules" && -x "$dest/node_modules/.bin/asc" ]] \
    && cmp -s "$src/package.json" "$dest/package.json" \
    && cmp -s "$src/package-lock.json" "$dest/package-lock.json"
}

if installed; then
  echo "setup-assemblyscript: toolchain up to date in $dest" >&2
else
  echo "setup-assemblyscript: installing toolchain into $dest" >&2
  mkdir -p "$dest"
  # The lock is copied last and removed on failure, so an interrupted or failed
  # install is redone by the next run (npm ci itself replaces node_modules).
  rm -f "$dest/package-lock.json"
  cp "$src/package.json" "$dest/package.json"
  cp "$src/package-lock.json" "$dest/package-lock.json"
  if ! (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error 1>&2); then
    rm -f "$dest/package-lock.json"
    die "'npm ci' failed in $dest (is the npm registry reachable?)"
  fi
  [[ -x "$dest/node_modules/.bin/asc" ]] || die "asc is missing after 'npm ci' in $dest"
  echo "setup-assemblyscript: installed $("$dest/node_modules/.bin/asc" --version)" >&2
fi

echo "$dest"

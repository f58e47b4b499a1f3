#!/usr/bin/env bash
# Build every sample filter in every language whose toolchain is set up, into
# OUT_DIR/<name>.<lang>.wasm. Incremental: the compilers' own caches make an
# unchanged rebuild fast.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${1:-$root/build/samples}"
mkdir -p "$out"
for dir in "$root"/samples/filters/*/; do
  name="$(basename "$dir")"
  target="$out/$name.assemblyscript.wasm"
  if [ -d "$dir/assemblyscript" ] && [ -f "$target" ] && \
     [ -z "$(find "$dir/assemblyscript" "$root/toolchains/assemblyscript" -newer "$target" -type f)" ]; then
    echo "up to date $target"
  elif [ -d "$dir/assemblyscript" ]; then
    bash "$here/build-assemblyscript.sh" "$dir/assemblyscript" "$out/$name.assemblyscript.wasm" >/dev/null
    echo "built $out/$name.assemblyscript.wasm"
  fi
  if [ -d "$dir/go" ]; then
    bash "$here/build-go.sh" "$dir/go" "$out/$name.go.wasm" >/dev/null
    echo "built $out/$name.go.wasm"
  fi
  if [ -d "$dir/rust" ]; then
    bash "$here/build-rust.sh" "$dir/rust" "$out/$name.rust.wasm" >/dev/null
    echo "built $out/$name.rust.wasm"
  fi
done

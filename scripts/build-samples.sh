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
    # A sample that needs Go build tags lists them in go/build-tags (one
    # line, comma-separated), e.g. the WAF's Coraza tags.
    go_args=()
    if [ -f "$dir/go/build-tags" ]; then
      go_args=("-tags=$(tr -d ' \n' <"$dir/go/build-tags")")
    fi
    bash "$here/build-go.sh" "$dir/go" "$out/$name.go.wasm" ${go_args[@]+"${go_args[@]}"} >/dev/null
    echo "built $out/$name.go.wasm"
  fi
  if [ -d "$dir/rust" ]; then
    bash "$here/build-rust.sh" "$dir/rust" "$out/$name.rust.wasm" >/dev/null
    echo "built $out/$name.rust.wasm"
  fi
  # Current Rust (edition 2024, Cargo.lock v4), built by the kit's modern Rust.
  if [ -d "$dir/rust-current" ]; then
    bash "$here/build-rust-modern.sh" "$dir/rust-current" "$out/$name.rust.wasm" >/dev/null
    echo "built $out/$name.rust.wasm"
  fi
done

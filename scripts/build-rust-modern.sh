#!/usr/bin/env bash
# Build a Rust proxy-wasm filter with the kit's modern Rust.
#
#   scripts/build-rust-modern.sh CRATE_DIR OUT.wasm
#
# CRATE_DIR holds Cargo.toml (crate-type cdylib) and a committed Cargo.lock
# (any version cargo 1.85+ reads, edition 2024 is fine), or is a member of a
# workspace whose Cargo.lock is at its root. The toolchain comes from
# scripts/setup-rust-modern.sh (run here first: near-instant when made). The
# crates are fetched once into ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/cargo-home
# (offline when they are there), then
#   cargo build --release --offline --locked --target wasm32-wasip1
# builds it with the target folder in <kit cache>/cargo-target-modern/<package
# name>, so nothing is written into CRATE_DIR. WASMKIT_RUST_TARGET picks
# another target (wasm32-unknown-unknown also builds).
# Compiler errors are printed on stderr and the exit status is non-zero on
# failure; OUT.wasm is replaced only when the build succeeds.
set -euo pipefail

die() { echo "build-rust-modern: error: $*" >&2; exit 1; }

[[ $# -eq 2 ]] || { echo "usage: $0 CRATE_DIR OUT.wasm" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate_dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such directory: $1"
[[ -f "$crate_dir/Cargo.toml" ]] || die "no Cargo.toml in $crate_dir"

out_dir="$(dirname "$2")"
mkdir -p "$out_dir"
out="$(cd "$out_dir" && pwd)/$(basename "$2")"

target="${WASMKIT_RUST_TARGET:-wasm32-wasip1}"
cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"

name="$(awk '
  /^[[:space:]]*\[/ { in_pkg = ($0 ~ /^[[:space:]]*\[package\][[:space:]]*$/) }
  in_pkg && /^[[:space:]]*name[[:space:]]*=/ {
    sub(/^[^=]*=[[:space:]]*["\047]/, ""); sub(/["\047].*$/, ""); print; exit
  }' "$crate_dir/Cargo.toml")"
[[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || die "cannot read the package name from $crate_dir/Cargo.toml"
target_dir="$cache/cargo-target-modern/$name"

prefix="$("$here/setup-rust-modern.sh")"
cargo="$prefix/bin/cargo"
[[ -x "$cargo" ]] || die "$cargo is missing after setup-rust-modern.sh"
protoc="$(command -v protoc || true)"

export CARGO_HOME="$cache/cargo-home"
export RUSTC="$prefix/bin/rustc"
export PATH="$prefix/bin:$PATH"
[[ -n "${PROTOC:-}" || -z "$protoc" ]] || export PROTOC="$protoc"

cd "$crate_dir"
# The host's crates too: build scripts and proc macros run on it.
host="$("$RUSTC" -vV | sed -n 's/^host: //p')"
fetch=(fetch --quiet --locked --target "$target" --target "$host")
if ! "$cargo" "${fetch[@]}" --offline >/dev/null 2>&1; then
  "$cargo" "${fetch[@]}" >/dev/null \
    || die "'cargo fetch' failed in $crate_dir (is crates.io reachable? is Cargo.lock up to date?)"
fi

mkdir -p "$target_dir"
messages="$(mktemp "$target_dir/.messages.XXXXXX")"
tmp="$(mktemp "$out.XXXXXX.tmp")"
trap 'rm -f "$messages" "$tmp"' EXIT

# As wasmkit.build does (wasmkit/build/rustmodern.py): host functions that a
# crate declares without an import module stay imports from "env"
# (--allow-undefined, which Rust 1.96 stopped passing); the crate sources'
# path is remapped so the module's bytes do not depend on where the cache is.
sep=$'\x1f'
encoded=""
read -r -a user_flags <<<"${RUSTFLAGS:-}" || true
for f in "${user_flags[@]}"; do encoded+="$f$sep"; done
encoded+="-Clink-arg=--allow-undefined$sep--remap-path-prefix=$CARGO_HOME=/cargo-home"

status=0
(
  unset RUSTFLAGS
  CARGO_ENCODED_RUSTFLAGS="$encoded" "$cargo" build \
    --release --offline --locked \
    --target "$target" \
    --target-dir "$target_dir" \
    --message-format=json-render-diagnostics \
    >"$messages"
) || status=$?
[[ $status -eq 0 ]] || die "cargo build failed for $crate_dir (exit $status; compiler errors above)"

artifact="$(grep '"reason":"compiler-artifact"' "$messages" \
  | grep -o '"[^"]*\.wasm"' | tail -n1 | tr -d '"')" || true
[[ -n "$artifact" && -f "$artifact" ]] \
  || die "cargo built no .wasm for $crate_dir (is crate-type = [\"cdylib\"] set in [lib]?)"

cp "$artifact" "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
rm -f "$messages"
echo "build-rust-modern: wrote $out ($(wc -c <"$out") bytes, $("$RUSTC" --version | awk '{print $2}') $target)" >&2

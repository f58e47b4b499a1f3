#!/usr/bin/env bash
# Build a Rust proxy-wasm filter offline with Debian's rustc 1.63.
#
#   scripts/build-rust.sh CRATE_DIR OUT.wasm
#
# CRATE_DIR holds Cargo.toml (crate-type cdylib) and a committed Cargo.lock
# (version 3, resolved for rustc 1.63). Its crates come from the vendor folder
# of setup-rust.sh (run here first: near-instant when already vendored), and
#   RUSTC=/usr/bin/rustc /usr/bin/cargo build --release --offline --locked \
#       --target wasm32-wasi
# builds it with the target folder in
# ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/cargo-target/<package name>, so nothing
# is written into CRATE_DIR. WASMKIT_RUST_TARGET picks another target
# (wasm32-unknown-unknown also builds).
# Compiler errors are printed on stderr and the exit status is non-zero on
# failure; OUT.wasm is replaced only when the build succeeds.
set -euo pipefail

die() { echo "build-rust: error: $*" >&2; exit 1; }

[[ $# -eq 2 ]] || { echo "usage: $0 CRATE_DIR OUT.wasm" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate_dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such directory: $1"
[[ -f "$crate_dir/Cargo.toml" ]] || die "no Cargo.toml in $crate_dir"
[[ -f "$crate_dir/Cargo.lock" ]] || die "no Cargo.lock in $crate_dir (see scripts/setup-rust.sh for how to make one)"

out_dir="$(dirname "$2")"
mkdir -p "$out_dir"
out="$(cd "$out_dir" && pwd)/$(basename "$2")"

target="${WASMKIT_RUST_TARGET:-wasm32-wasi}"
cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"

# The package name from the [package] table names the target folder.
name="$(awk '
  /^[[:space:]]*\[/ { in_pkg = ($0 ~ /^[[:space:]]*\[package\][[:space:]]*$/) }
  in_pkg && /^[[:space:]]*name[[:space:]]*=/ {
    sub(/^[^=]*=[[:space:]]*["\047]/, ""); sub(/["\047].*$/, ""); print; exit
  }' "$crate_dir/Cargo.toml")"
[[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || die "cannot read the package name from $crate_dir/Cargo.toml"
target_dir="$cache/cargo-target/$name"

vendor="$("$here/setup-rust.sh" "$crate_dir")"
[[ -d "$vendor" ]] || die "vendor folder $vendor is missing after setup-rust.sh"

mkdir -p "$target_dir"
messages="$(mktemp "$target_dir/.messages.XXXXXX")"
tmp="$(mktemp "$out.XXXXXX.tmp")"
trap 'rm -f "$messages" "$tmp"' EXIT

# Crate sources are read from the vendor folder; its path is remapped so the
# paths baked into panic messages (and so the module's bytes) do not depend on
# where the cache lives. These flags reach only the wasm target's units, not
# build scripts, because --target is given.
# CARGO_ENCODED_RUSTFLAGS (0x1f-separated) keeps a cache path with spaces in
# one flag; flags from RUSTFLAGS are kept in front.
sep=$'\x1f'
encoded=""
read -r -a user_flags <<<"${RUSTFLAGS:-}" || true
for f in "${user_flags[@]}"; do encoded+="$f$sep"; done
encoded+="--remap-path-prefix=$vendor=/cargo-vendor"

# Diagnostics are rendered on stderr; stdout carries cargo's JSON messages,
# from which the .wasm artifact is taken.
status=0
(
  cd "$crate_dir"
  unset RUSTFLAGS
  RUSTC=/usr/bin/rustc CARGO_ENCODED_RUSTFLAGS="$encoded" /usr/bin/cargo build \
    --release --offline --locked \
    --target "$target" \
    --target-dir "$target_dir" \
    --config 'source.crates-io.replace-with="wasmkit-vendor"' \
    --config "source.wasmkit-vendor.directory=\"$vendor\"" \
    --message-format=json-render-diagnostics \
    >"$messages"
) || status=$?
[[ $status -eq 0 ]] || die "cargo build failed for $crate_dir (exit $status; compiler errors above)"

# The last .wasm file cargo reports is the crate's cdylib.
artifact="$(grep '"reason":"compiler-artifact"' "$messages" \
  | grep -o '"[^"]*\.wasm"' | tail -n1 | tr -d '"')" || true
[[ -n "$artifact" && -f "$artifact" ]] \
  || die "cargo built no .wasm for $crate_dir (is crate-type = [\"cdylib\"] set in [lib]?)"

cp "$artifact" "$tmp"
chmod 644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
rm -f "$messages"
echo "build-rust: wrote $out ($(wc -c <"$out") bytes, $target)" >&2

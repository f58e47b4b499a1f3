#!/usr/bin/env bash
# Prepare the Rust toolchain for the kit's proxy-wasm filters.
#
#   scripts/setup-rust.sh [CRATE_DIR...]
#
# 1. Compiler: the only wasm32 std on this kind of machine is Debian's
#    (rustc 1.63 in /usr/bin, libstd-rust-dev-wasm32 for wasm32-wasi and
#    wasm32-unknown-unknown, lld for the linker). When /usr/bin/rustc,
#    /usr/bin/cargo, the wasm32 std or the linker is missing they are installed
#    with apt-get (root only).
# 2. Crates: the crates of every Cargo.lock under samples/filters/*/rust, and of
#    each CRATE_DIR given, are vendored into
#    ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/cargo-vendor with a modern cargo
#    (Debian's cargo 0.66 cannot read the crates.io sparse index), so that
#    scripts/build-rust.sh can build offline with Debian's cargo.
#    Nothing is done when that folder was vendored for the same lockfiles
#    (compared by SHA-256), so a second run is near-instant.
#
# Every crate needs a committed Cargo.lock of version 3 resolved for rustc
# 1.63; with `rust-version = "1.63"` in its Cargo.toml, make one with
#   CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo generate-lockfile
#
# Environment: WASMKIT_CACHE (see above); WASMKIT_CARGO, a cargo >= 1.70 to
# vendor with (default: the kit's modern cargo from setup-rust-modern.sh, else
# the first such cargo on PATH or in ~/.cargo/bin).
# Prints the vendor folder on stdout; progress goes to stderr.
set -euo pipefail

die() { echo "setup-rust: error: $*" >&2; exit 1; }
note() { echo "setup-rust: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"
vendor="$cache/cargo-vendor"
stamp_name=".wasmkit-lockfiles"

# ---------------------------------------------------------------- compiler --
debian_packages=(rustc cargo libstd-rust-dev-wasm32 lld)

toolchain_missing() {
  local sysroot t
  [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] || { echo "/usr/bin/rustc or /usr/bin/cargo"; return 0; }
  sysroot="$(/usr/bin/rustc --print sysroot 2>/dev/null)" || { echo "a working /usr/bin/rustc"; return 0; }
  for t in wasm32-wasi wasm32-unknown-unknown; do
    compgen -G "$sysroot/lib/rustlib/$t/lib/libstd-*.rlib" >/dev/null \
      || { echo "the $t std (libstd-rust-dev-wasm32)"; return 0; }
  done
  # rustc links wasm with rust-lld, Debian's symlink to lld-NN from 'lld'.
  [[ -x /usr/bin/rust-lld ]] || { echo "the wasm linker (lld)"; return 0; }
  return 1
}

if missing="$(toolchain_missing)"; then
  if [[ "$(id -u)" -ne 0 ]]; then
    die "$missing is missing and this script is not running as root. Install Debian's Rust with the wasm32 std as root: 'apt-get update && apt-get install -y ${debian_packages[*]}', then run this script again."
  fi
  note "$missing is missing; installing ${debian_packages[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2 || die "'apt-get update' failed"
  apt-get install -y "${debian_packages[@]}" >&2 || die "'apt-get install -y ${debian_packages[*]}' failed"
  if missing="$(toolchain_missing)"; then
    die "$missing is still missing after installing ${debian_packages[*]}"
  fi
fi
note "compiler: $(/usr/bin/rustc --version), $(/usr/bin/cargo --version)"

# ------------------------------------------------------------------ crates --
crate_dirs=()
for d in "$repo_root"/samples/filters/*/rust; do
  [[ -f "$d/Cargo.toml" ]] && crate_dirs+=("$d")
done
for arg in "$@"; do
  d="$(cd "$arg" 2>/dev/null && pwd)" || die "no such directory: $arg"
  [[ -f "$d/Cargo.toml" ]] || die "no Cargo.toml in $d"
  crate_dirs+=("$d")
done
[[ ${#crate_dirs[@]} -gt 0 ]] || die "no crates found under $repo_root/samples/filters/*/rust"

# "sha256 path" per crate, sorted, deduplicated.
wanted=""
for d in "${crate_dirs[@]}"; do
  lock="$d/Cargo.lock"
  [[ -f "$lock" ]] || die "$lock is missing: commit a lockfile resolved for rustc 1.63 (in $d: CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS=fallback cargo generate-lockfile)"
  lock_version="$(sed -n 's/^version = \([0-9]*\)$/\1/p;T;q' "$lock")"
  [[ -z "$lock_version" || "$lock_version" -le 3 ]] \
    || die "$lock is a version $lock_version lockfile, which Debian's cargo 0.66 cannot read: set its 'version = ' line to 3 (or set rust-version = \"1.63\" in Cargo.toml and regenerate it)"
  wanted+="$(sha256sum "$lock" | cut -d' ' -f1) $lock"$'\n'
done
wanted="$(printf '%s' "$wanted" | sort -u)"

# Up to date when every wanted lockfile hash is listed in the stamp.
up_to_date() {
  local stamp="$vendor/$stamp_name" line
  [[ -f "$stamp" ]] || return 1
  while IFS= read -r line; do
    grep -q "^${line%% *} " "$stamp" || return 1
  done <<<"$wanted"
}

mkdir -p "$cache"
# One setup at a time per cache (build-rust.sh runs this script too).
exec 9>"$cache/cargo-vendor.lock"
if command -v flock >/dev/null 2>&1; then
  flock 9
fi

find_modern_cargo() {
  local c v major minor
  local candidates=()
  [[ -n "${WASMKIT_CARGO:-}" ]] && candidates+=("$WASMKIT_CARGO")
  # The kit's own modern cargo (scripts/setup-rust-modern.sh), when made.
  [[ -f "$cache/rust-modern/current/wasmkit-toolchain.json" ]] \
    && candidates+=("$cache/rust-modern/current/bin/cargo")
  while IFS= read -r c; do candidates+=("$c"); done < <(type -ap cargo || true)
  candidates+=("${CARGO_HOME:-$HOME/.cargo}/bin/cargo")
  for c in "${candidates[@]}"; do
    [[ -x "$c" ]] || continue
    v="$("$c" --version 2>/dev/null | awk '{print $2}')" || continue
    major="${v%%.*}"; minor="${v#*.}"; minor="${minor%%.*}"
    [[ "$major" =~ ^[0-9]+$ && "$minor" =~ ^[0-9]+$ ]] || continue
    if (( major > 1 || minor >= 70 )); then
      echo "$c"
      return 0
    fi
  done
  return 1
}
# 3. Crates of the current proxy-wasm (wasmkit/build/templates/rust-current),
#    which source text uses with the kit's modern Rust or a rustup toolchain:
#    fetched into $cache/cargo-home, where such builds look for them offline.
#    Quick and quiet when they are there already.
current="$repo_root/wasmkit/build/templates/rust-current/Cargo.toml"
if current_cargo="$(find_modern_cargo)"; then
  if ! CARGO_HOME="$cache/cargo-home" "$current_cargo" fetch --quiet --locked --offline \
        --manifest-path "$current" >/dev/null 2>&1; then
    note "fetching the current proxy-wasm crates into $cache/cargo-home"
    CARGO_HOME="$cache/cargo-home" "$current_cargo" fetch --quiet --locked \
        --manifest-path "$current" >/dev/null \
      || die "'cargo fetch' of $current failed (is crates.io reachable?)"
  fi
fi

if up_to_date; then
  note "crates up to date in $vendor"
  echo "$vendor"
  exit 0
fi

modern_cargo="$(find_modern_cargo)" \
  || die "no cargo >= 1.70 found (on PATH, in ~/.cargo/bin or as \$WASMKIT_CARGO): vendoring needs one that reads the crates.io sparse index (e.g. rustup's); Debian's /usr/bin/cargo cannot"
note "vendoring crates of ${#crate_dirs[@]} crate(s) with $("$modern_cargo" --version) into $vendor"

# Vendor into a fresh folder next to the old one, then swap, so an interrupted
# run never leaves a half-filled vendor folder behind a valid stamp.
tmp="$(mktemp -d "$cache/cargo-vendor.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
sync_args=()
for d in "${crate_dirs[@]:1}"; do
  sync_args+=(--sync "$d/Cargo.toml")
done
# --locked: fail rather than touch a committed Cargo.lock. --versioned-dirs:
# several lockfiles may pin different versions of one crate.
if ! "$modern_cargo" vendor --quiet --locked --versioned-dirs \
      --manifest-path "${crate_dirs[0]}/Cargo.toml" "${sync_args[@]}" \
      "$tmp/vendor" >/dev/null; then
  die "'cargo vendor' failed (is crates.io reachable? is every Cargo.lock up to date with its Cargo.toml?)"
fi
printf '%s\n' "$wanted" >"$tmp/vendor/$stamp_name"

rm -rf "$vendor"
mv "$tmp/vendor" "$vendor"
rm -rf "$tmp"
trap - EXIT
note "vendored $(find "$vendor" -mindepth 1 -maxdepth 1 -type d | wc -l) crates into $vendor"
echo "$vendor"

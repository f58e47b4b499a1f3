#!/usr/bin/env bash
# Make the kit's own modern Rust for wasm32, in a private prefix.
#
#   scripts/setup-rust-modern.sh
#
# Debian 12's rustc is 1.63; current crates (proxy-wasm 0.2.5, prost, edition
# 2024, Cargo.lock v4) need a newer one. Debian ships one as rustc-web /
# cargo-web (bookworm-security), but installing it replaces /usr/bin/rustc and
# /usr/bin/cargo (which scripts/setup-rust.sh and the 1.63 samples use), and it
# has no wasm32 std. So this script:
#
# 1. downloads rustc-web, cargo-web, libstd-rust-web-dev, libstd-rust-web-N and
#    rust-web-src with `apt-get download` (never `apt-get install`) and unpacks
#    them with `dpkg-deb -x` into
#    ${WASMKIT_CACHE:-$HOME/.cache/wasmkit}/rust-modern/<release>-<commit>-<rev>/;
# 2. installs with apt-get (root only, nothing is removed) what those need at
#    run time and what the wasm builds need: the libraries they link (libllvmN,
#    libgit2, ...), lld-N (wasm-ld of the same LLVM, else lld-19), wasi-libc and
#    protobuf-compiler (protoc, for prost);
# 3. builds the std for wasm32-unknown-unknown and wasm32-wasip1 from the
#    vendored sources of rust-web-src (offline, `cargo -Zbuild-std`, about a
#    minute of CPU per target) into the prefix's own sysroot, with Debian's
#    wasi-libc as the wasip1 target's self-contained crt and libc;
# 4. writes bin/rustc, bin/cargo and bin/rustdoc (the unpacked tools with their
#    library path, wasm-ld as the wasm linker) and wasmkit-toolchain.json, which
#    wasmkit.build reads, then points rust-modern/current at the prefix;
# 5. fetches the crates of wasmkit/build/templates/rust-current into
#    <kit cache>/cargo-home (once).
#
# The prefix is made in a temporary folder and renamed into place, so an
# interrupted run leaves nothing half-made behind. A second run checks the
# stamp (and, when the apt lists changed since, the candidate version) and is
# done in well under a second; a new rustc-web makes a new prefix and the old
# one is removed.
#
# Environment: WASMKIT_CACHE (see above). Prints the prefix on stdout;
# progress goes to stderr.
set -euo pipefail

# An update that fails keeps the toolchain made before ($keep), if any.
keep=""
die() {
  echo "setup-rust-modern: error: $*" >&2
  if [[ -n "$keep" ]]; then
    echo "setup-rust-modern: keeping the toolchain made before, $keep" >&2
    echo "$keep"
    exit 0
  fi
  exit 1
}
note() { echo "setup-rust-modern: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"
base="$cache/rust-modern"
current="$base/current"
stamp_name="wasmkit-toolchain.json"
targets=(wasm32-unknown-unknown wasm32-wasip1)
min_minor=85 # edition 2024 needs Rust 1.85
is_root=0
[[ "$(id -u)" -eq 0 ]] && is_root=1

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
  || die "apt-get and dpkg-deb are needed: this set-up works on Debian 12 (bookworm) only"

mkdir -p "$base"
# One set-up at a time per cache.
exec 9>"$base/.lock"
command -v flock >/dev/null && flock 9

# ------------------------------------------------------------- up to date --
# The stamp's field, e.g. stamp_field "$current/$stamp_name" debian_version.
stamp_field() {
  sed -n "s/^ *\"$2\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" "$1" | head -n1
}

fetch_template_crates() {
  local cargo="$1" manifest="$repo_root/wasmkit/build/templates/rust-current/Cargo.toml"
  [[ -f "$manifest" ]] || return 0
  if ! CARGO_HOME="$cache/cargo-home" "$cargo" fetch --quiet --locked --offline \
      --manifest-path "$manifest" >/dev/null 2>&1; then
    note "fetching the crates of the current proxy-wasm into $cache/cargo-home"
    CARGO_HOME="$cache/cargo-home" "$cargo" fetch --quiet --locked \
        --manifest-path "$manifest" >/dev/null \
      || note "warning: 'cargo fetch' of $manifest failed (is crates.io reachable?); builds fetch what they need"
  fi
}

# The prefix is good when its stamp is there, its rustc answers with the
# recorded commit, its linker exists and each target has a std.
healthy() {
  local prefix="$1" stamp="$1/$stamp_name" t
  [[ -f "$stamp" ]] || return 1
  [[ -x "$(stamp_field "$stamp" linker)" ]] || return 1
  for t in "${targets[@]}"; do
    compgen -G "$prefix/usr/lib/rustlib/$t/lib/libstd-*.rlib" >/dev/null || return 1
  done
  local info
  info="$("$prefix/bin/rustc" -vV 2>/dev/null)" || return 1
  grep -qx "commit-hash: $(stamp_field "$stamp" commit)" <<<"$info"
}

candidate_version() {
  apt-cache show --no-all-versions rustc-web 2>/dev/null | sed -n 's/^Version: //p' | head -n1
}

if healthy "$current"; then
  have="$(stamp_field "$current/$stamp_name" debian_version)"
  # Ask apt (slow: most of a second) only when its lists changed since.
  if [[ -z "$(find /var/lib/apt/lists -maxdepth 1 -type f -newer "$current/$stamp_name" -print -quit 2>/dev/null)" ]] \
      || [[ "$(candidate_version)" == "$have" ]]; then
    touch "$current/$stamp_name"
    fetch_template_crates "$current/bin/cargo"
    note "rustc $(stamp_field "$current/$stamp_name" release) (Debian rustc-web $have) up to date in $(readlink -f "$current")"
    readlink -f "$current"
    exit 0
  fi
  note "Debian has a new rustc-web ($(candidate_version), have $have): making a new prefix"
  keep="$(readlink -f "$current")"
fi

# --------------------------------------------------------------- packages --
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update() {
  [[ $apt_updated -eq 1 ]] && return 0
  [[ $is_root -eq 1 ]] || return 1
  note "apt-get update"
  apt-get update >&2 || die "'apt-get update' failed"
  apt_updated=1
}

# Sets version, series and packages from apt's candidate rustc-web.
pick_version() {
  version="$(candidate_version)"
  if [[ -z "$version" ]]; then
    apt_update || die "apt knows no package rustc-web and this script is not running as root: run 'apt-get update' as root (bookworm-security must be in the apt sources), then this script again"
    version="$(candidate_version)"
    [[ -n "$version" ]] || die "apt knows no package rustc-web even after 'apt-get update': add bookworm-security to the apt sources ('deb http://deb.debian.org/debian-security bookworm-security main')"
  fi
  # 1.96.0+dfsg1-1~deb12u2 -> 1.96
  series="$(sed -n 's/^\([0-9]*\.[0-9]*\)\..*/\1/p' <<<"$version")"
  local minor="${series#*.}"
  [[ "$minor" =~ ^[0-9]+$ && "$minor" -ge $min_minor ]] \
    || die "Debian's rustc-web is $version; the kit needs 1.$min_minor or newer (edition 2024). Is bookworm-security in the apt sources, and 'apt-get update' done?"
  packages=(rustc-web cargo-web libstd-rust-web-dev "libstd-rust-web-$series" rust-web-src)
}
pick_version

installed() { [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]; }

# Installs what is not installed yet; refuses anything that would remove a
# package (rustc-web and cargo-web are never asked for: they would).
apt_install() {
  local missing=() p
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $is_root -eq 1 ]] \
    || die "${missing[*]} not installed and this script is not running as root: as root, 'apt-get install -y --no-install-recommends ${missing[*]}', then run this script again"
  if ! apt-get -s install --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt_update
  fi
  if apt-get -s install --no-install-recommends "${missing[@]}" 2>/dev/null | grep -q '^Remv '; then
    die "installing ${missing[*]} would remove packages; not doing it (see 'apt-get -s install ${missing[*]}')"
  fi
  note "installing ${missing[*]} with apt-get"
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || die "'apt-get install -y ${missing[*]}' failed"
}

mkdir -p "$base"
tmp="$(mktemp -d "$base/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/debs" "$tmp/prefix"
prefix="$tmp/prefix"

download() {
  local pinned=() p sandbox=()
  for p in "${packages[@]}"; do pinned+=("$p=$version"); done
  # The _apt sandbox user cannot write into a root-only cache folder.
  [[ $is_root -eq 1 ]] && sandbox=(-o APT::Sandbox::User=root)
  note "downloading ${packages[*]} $version (apt-get download, not installed)"
  (cd "$tmp/debs" && apt-get download "${sandbox[@]}" "${pinned[@]}" >&2)
}
if ! download; then
  # Stale lists name a version the archive no longer has.
  apt_update || die "'apt-get download' of ${packages[*]} $version failed and this script is not running as root to 'apt-get update'"
  pick_version
  rm -f "$tmp"/debs/*.deb
  download || die "'apt-get download' of ${packages[*]} $version failed (is deb.debian.org reachable?)"
fi

# What the unpacked tools need at run time: the Depends of the packages,
# first alternative each, but the packages themselves (and c-compiler, a
# virtual package that gcc provides).
runtime=()
for deb in "$tmp"/debs/*.deb; do
  while IFS= read -r dep; do
    dep="${dep%%|*}"; dep="${dep%%(*}"; dep="${dep// /}"
    [[ -n "$dep" ]] || continue
    case " ${packages[*]} c-compiler " in *" $dep "*) continue ;; esac
    [[ "$dep" == libc-dev ]] && dep=libc6-dev
    runtime+=("$dep")
  done < <(dpkg-deb -f "$deb" Depends | tr ',' '\n')
done
mapfile -t runtime < <(printf '%s\n' "${runtime[@]}" | sort -u)
for deb in "$tmp"/debs/*.deb; do
  dpkg-deb -x "$deb" "$prefix" || die "cannot unpack $deb"
done
rm -rf "$tmp/debs"

rustc_real="$prefix/usr/bin/rustc"
driver="$(compgen -G "$prefix/usr/lib/*/librustc_driver-*.so" | head -n1)" \
  || die "no librustc_driver in the unpacked rustc-web"
libdir_rel="${driver#"$prefix/"}"; libdir_rel="${libdir_rel%/*}" # usr/lib/x86_64-linux-gnu

# LLVM of the compiler (its libllvmN dependency), for a linker of the same LLVM.
llvm_major="$(printf '%s\n' "${runtime[@]}" | sed -n 's/^libllvm\([0-9][0-9]*\)$/\1/p' | head -n1)"
lld=""
for candidate in ${llvm_major:+lld-$llvm_major} lld-22 lld-19; do
  if installed "$candidate" || apt-cache show --no-all-versions "$candidate" >/dev/null 2>&1; then
    lld="$candidate"
    break
  fi
done
[[ -n "$lld" ]] || die "apt has no lld-${llvm_major:-22} and no lld-19 (the wasm linker)"
apt_install "${runtime[@]}" "$lld" wasi-libc protobuf-compiler
linker="/usr/lib/llvm-${lld#lld-}/bin/wasm-ld"
[[ -x "$linker" ]] || die "$linker is missing after installing $lld"
wasi_libc=/usr/lib/wasm32-wasi
[[ -f "$wasi_libc/libc.a" && -f "$wasi_libc/crt1-command.o" ]] \
  || die "$wasi_libc/libc.a or crt1-command.o is missing after installing wasi-libc"

# ------------------------------------------------------------- the tools --
mkdir -p "$prefix/bin"
for tool in rustc rustdoc; do
  cat >"$prefix/bin/$tool" <<EOF
#!/bin/sh
# Debian's $tool from rustc-web, unpacked into this prefix (not installed):
# its shared libraries are found through LD_LIBRARY_PATH.
here="\${0%/*}/.."
LD_LIBRARY_PATH="\$here/$libdir_rel\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$here/usr/bin/$tool" "\$@"
EOF
done
cat >"$prefix/bin/cargo" <<EOF
#!/bin/sh
# Debian's cargo from cargo-web, unpacked into this prefix (not installed),
# with this prefix's rustc and, for the wasm targets, $linker.
here="\${0%/*}"
export RUSTC="\${RUSTC:-\$here/rustc}" RUSTDOC="\${RUSTDOC:-\$here/rustdoc}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="\${CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER:-$linker}"
export CARGO_TARGET_WASM32_WASIP1_LINKER="\${CARGO_TARGET_WASM32_WASIP1_LINKER:-$linker}"
exec "\$here/../usr/bin/cargo" "\$@"
EOF
chmod 755 "$prefix/bin/rustc" "$prefix/bin/rustdoc" "$prefix/bin/cargo"

info="$("$prefix/bin/rustc" -vV)" \
  || die "the unpacked rustc does not run: $("$prefix/bin/rustc" -vV 2>&1 | tail -n3)"
commit="$(sed -n 's/^commit-hash: //p' <<<"$info")"
release="$(sed -n 's/^release: //p' <<<"$info")"
host="$(sed -n 's/^host: //p' <<<"$info")"
llvm="$(sed -n 's/^LLVM version: //p' <<<"$info")"
[[ "$commit" =~ ^[0-9a-f]{40}$ ]] || die "cannot read the commit hash from 'rustc -vV':"$'\n'"$info"
cargo_version="$("$prefix/bin/cargo" --version 2>/dev/null | awk '{print $2}')" \
  && [[ -n "$cargo_version" ]] \
  || die "the unpacked cargo does not run: $("$prefix/bin/cargo" --version 2>&1 | tail -n3)"

# Keyed by the compiler's commit and Debian's revision of it.
name="$release-${commit:0:12}-${version##*-}"
final="$base/$name"
if healthy "$final"; then
  note "$final is made already"
else
  # ------------------------------------------------------------- the std --
  src="$prefix/usr/src/rustc-$release"
  [[ -f "$src/library/Cargo.lock" && -d "$src/library/vendor" ]] \
    || die "rust-web-src has no library/ with vendored crates in $src"
  # Only library/ is needed (for -Zbuild-std, and by editors); the compiler's
  # own sources are most of the package.
  find "$src" -mindepth 1 -maxdepth 1 ! -name library ! -name Cargo.lock ! -name Cargo.toml \
    -exec rm -rf {} +
  rm -rf "$prefix/usr/share/doc" "$prefix/usr/share/man" "$prefix/usr/libexec"

  work="$tmp/std"
  mkdir -p "$work/src"
  cat >"$work/Cargo.toml" <<'EOF'
[package]
name = "wasmkit-sysroot"
version = "0.0.0"
edition = "2021"

[lib]
path = "src/lib.rs"

[profile.release]
opt-level = 3
debug = 0
EOF
  : >"$work/src/lib.rs"
  note "building the std of rustc $release for ${targets[*]} (offline, a minute or two)"
  started=$SECONDS
  target_args=()
  for t in "${targets[@]}"; do target_args+=(--target "$t"); done
  # As the std rustup ships: bitcode embedded (for LTO), unstable unless
  # marked, source paths as /rustc/<commit>.
  flags="-Cembed-bitcode=yes -Zforce-unstable-if-unmarked"
  flags+=" --remap-path-prefix=$src=/rustc/$commit"
  flags+=" --remap-path-prefix=$prefix/usr/lib/rustlib/src/rust=/rustc/$commit"
  if ! (cd "$work" && RUSTC_BOOTSTRAP=1 CARGO_HOME="$work/cargo-home" RUSTFLAGS="$flags" \
        nice "$prefix/bin/cargo" build --release --offline --quiet \
        -Zbuild-std=std,panic_abort "${target_args[@]}" \
        --config 'source.crates-io.replace-with="std-vendor"' \
        --config "source.std-vendor.directory=\"$src/library/vendor\"" >&2); then
    die "building the wasm std failed (cargo -Zbuild-std in $work; output above)"
  fi
  for t in "${targets[@]}"; do
    lib="$prefix/usr/lib/rustlib/$t/lib"
    mkdir -p "$lib"
    find "$work/target/$t/release/deps" -maxdepth 1 -name 'lib*.rlib' \
      ! -name 'libwasmkit_sysroot-*' -exec cp {} "$lib/" \;
    compgen -G "$lib/libstd-*.rlib" >/dev/null || die "no libstd was built for $t"
  done
  # wasm32-wasip1 links its crt and libc from the sysroot (self-contained).
  mkdir -p "$prefix/usr/lib/rustlib/wasm32-wasip1/lib/self-contained"
  cp "$wasi_libc"/*.o "$wasi_libc"/*.a "$prefix/usr/lib/rustlib/wasm32-wasip1/lib/self-contained/"
  rm -rf "$work"
  note "built the std in $((SECONDS - started)) s"

  cat >"$prefix/$stamp_name" <<EOF
{
  "release": "$release",
  "cargo": "$cargo_version",
  "commit": "$commit",
  "host": "$host",
  "llvm": "$llvm",
  "debian_version": "$version",
  "linker": "$linker",
  "protoc": "$(command -v protoc || true)",
  "targets": "${targets[*]}"
}
EOF
  # Smoke test: a cdylib for each target.
  smoke="$tmp/smoke"
  mkdir -p "$smoke"
  printf '#[unsafe(no_mangle)]\npub extern "C" fn answer() -> u32 { let Some(x) = Some(42u32) else { return 0 }; x }\n' >"$smoke/lib.rs"
  for t in "${targets[@]}"; do
    "$prefix/bin/rustc" --edition 2024 --crate-type cdylib -C opt-level=1 -C "linker=$linker" \
        --target "$t" -o "$smoke/$t.wasm" "$smoke/lib.rs" >&2 \
      || die "the new toolchain cannot build a cdylib for $t (rustc output above)"
  done
  rm -rf "$smoke"

  rm -rf "$final"
  mv "$prefix" "$final"
fi
# Point current at it (atomic rename of a new link), then drop older prefixes.
ln -sfn "$name" "$base/.current.new"
mv -T "$base/.current.new" "$current"
keep=""
for old in "$base"/*/; do
  old="${old%/}"
  [[ "$old" == "$final" || "$old" == "$current" ]] && continue
  note "removing the older toolchain $old"
  rm -rf "$old"
done
rm -rf "$tmp"
trap - EXIT
fetch_template_crates "$current/bin/cargo"
note "rustc $release ($commit, Debian rustc-web $version, LLVM $llvm) ready in $final; wasm linker $linker"
echo "$final"

#!/usr/bin/env bash
# Cold build time and module size of every sample filter in every language:
#
#   bash samples/filters/build-times.sh [LANG...]      (default: all)
#
# Each build runs its language's scripts/build-*.sh with a fresh, empty
# compiler cache (its own WASMKIT_CACHE, holding only links to the kit's
# installed toolchains, vendored crates and Go modules, which no build writes),
# so the time includes compiling the language's standard library and every
# dependency, as on a fresh checkout once the toolchains are set up.
# Prints one tab-separated line per module: sample, language, seconds, bytes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
kit="${WASMKIT_CACHE:-$HOME/.cache/wasmkit}"
langs=("$@")
[[ ${#langs[@]} -gt 0 ]] || langs=(assemblyscript rust go rust-current)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Make sure the toolchains and dependencies are in place before timing.
bash "$root/scripts/build-samples.sh" "$work/warm" >/dev/null
for lang in "${langs[@]}"; do
  case "$lang" in
    assemblyscript) script=build-assemblyscript.sh ;;
    rust) script=build-rust.sh ;;
    rust-current) script=build-rust-modern.sh ;;
    go) script=build-go.sh ;;
    *) echo "unknown language $lang" >&2; exit 2 ;;
  esac
  for dir in "$here"/*/"$lang"; do
    [[ -d "$dir" ]] || continue
    name="$(basename "$(dirname "$dir")")"
    cache="$work/cache-$name-$lang"
    mkdir -p "$cache"
    for keep in toolchains cargo-vendor cargo-vendor.lock rust-modern cargo-home gomod gomod.lock; do
      [[ -e "$kit/$keep" ]] && ln -s "$kit/$keep" "$cache/$keep"
    done
    args=()
    [[ -f "$dir/build-tags" ]] && args=("-tags=$(tr -d ' \n' <"$dir/build-tags")")
    out="$work/$name.$lang.wasm"
    start="$(date +%s.%N)"
    WASMKIT_CACHE="$cache" bash "$root/scripts/$script" "$dir" "$out" ${args[@]+"${args[@]}"} >/dev/null 2>"$work/log"
    end="$(date +%s.%N)"
    printf '%s\t%s\t%.1f\t%s\n' "$name" "$lang" "$(echo "$end - $start" | bc)" "$(wc -c <"$out")"
    rm -rf "$cache"
  done
done

#!/usr/bin/env bash
# Prepare the browser for the kit's real-browser test (tests/browser).
#
#   scripts/setup-browser.sh
#
# 1. Browser: Debian's Chromium (/usr/bin/chromium, package 'chromium'). When
#    it is missing it is installed with apt-get (root only). Playwright never
#    downloads a browser for wasmkit: the test hands it this executable.
# 2. Check: the venv's playwright Python package launches that Chromium
#    headless and opens a blank page.
#
# Environment: WASMKIT_CHROMIUM, the Chromium to use (default /usr/bin/chromium;
# when set, nothing is installed); PYTHON, the interpreter that has playwright
# (default .venv/bin/python of the repository).
# Prints the browser path on stdout; progress goes to stderr, one line when all
# is in place.
set -euo pipefail

die() { echo "setup-browser: error: $*" >&2; exit 1; }
note() { echo "setup-browser: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo_root/.venv/bin/python}"
chromium="${WASMKIT_CHROMIUM:-/usr/bin/chromium}"

# ----------------------------------------------------------------- browser --
debian_packages=(chromium)

if [[ ! -x "$chromium" ]]; then
  [[ -z "${WASMKIT_CHROMIUM:-}" ]] || die "WASMKIT_CHROMIUM=$chromium is not an executable"
  if [[ "$(id -u)" -ne 0 ]]; then
    die "$chromium is missing and this script is not running as root. Install Debian's Chromium as root: 'apt-get update && apt-get install -y ${debian_packages[*]}', then run this script again."
  fi
  note "$chromium is missing; installing ${debian_packages[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update >&2 || die "'apt-get update' failed"
  apt-get install -y --no-install-recommends "${debian_packages[@]}" >&2 \
    || die "'apt-get install -y ${debian_packages[*]}' failed"
  [[ -x "$chromium" ]] || die "$chromium is still missing after installing ${debian_packages[*]}"
fi

# ------------------------------------------------------------------- check --
[[ -x "$python" ]] || die "$python is missing: run 'make venv' first (or set PYTHON)"
# --no-sandbox: Chromium refuses to start its sandbox as root.
check='import sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=sys.argv[1], headless=True, args=["--no-sandbox"])
    b.new_page().goto("about:blank")
    print(b.version)
    b.close()'
if ! version="$(timeout 60 "$python" -c "$check" "$chromium" 2>&1)"; then
  die "playwright ($python) cannot launch $chromium: $(tail -n 3 <<<"$version")"
fi
note "$chromium $version launches under playwright"
echo "$chromium"

#!/usr/bin/env bash
# Make sure the system packages a make target needs are installed, before any long step.
#   scripts/system-packages.sh demo   bubblewrap (the grading sandbox), prlimit/setpriv
#   scripts/system-packages.sh test   the same, plus chromium and chromium-driver (browser tests)
# As root with apt-get, missing packages are installed; otherwise it stops at once and prints the
# one command that installs them.
set -euo pipefail

want=(bubblewrap:bwrap util-linux:prlimit util-linux:setpriv)
if [ "${1:-demo}" = "test" ]; then
  want+=(chromium:chromium chromium-driver:chromedriver)
fi

missing=()
for pair in "${want[@]}"; do
  package=${pair%%:*} command=${pair#*:}
  if ! command -v "$command" >/dev/null 2>&1 && [[ ! " ${missing[*]-} " =~ " $package " ]]; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  exit 0
fi
echo "missing system packages: ${missing[*]}" >&2
echo "install them once with:  sudo sh -c '$command'" >&2
exit 1

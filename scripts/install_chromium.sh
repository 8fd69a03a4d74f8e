#!/usr/bin/env bash
# Installs Debian's Chromium (/usr/bin/chromium) for the console's browser tests
# (tests/test_console_browser.py drive it through Playwright's executable_path; Playwright
# never downloads a browser of its own). A no-op once it is there. Needs root or sudo, as
# in CI; without either it says so and the browser tests skip.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "apt-get not found: install Chromium as /usr/bin/chromium; the browser tests will be skipped" >&2
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "not root and no sudo: install Chromium as /usr/bin/chromium; the browser tests will be skipped" >&2
    exit 0
  fi
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >&2

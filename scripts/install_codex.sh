#!/usr/bin/env bash
# Installs the pinned Codex CLI (npm @openai/codex) into ./.tools/codex (git-ignored) when it
# is not there yet, for the real-client tests (tests/test_codex.py). About 25 s and 420 MB
# on a warm network; a no-op once installed. Without npm it says so and the tests skip.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.171.0
prefix=.tools/codex
bin="$prefix/node_modules/.bin/codex"
if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "codex-cli $version" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "npm not found: the Codex CLI tests will be skipped" >&2
  exit 0
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error "@openai/codex@$version" >&2

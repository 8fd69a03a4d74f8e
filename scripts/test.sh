#!/usr/bin/env bash
# Installs Continuo with its test tools, then runs the linters, the type checker and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
scripts/install_codex.sh
# Debian's Chromium for the console's browser tests (a no-op once installed).
scripts/install_chromium.sh
# The reference MCP server the MCP tests run against (npm; a no-op once installed).
scripts/install-mcp-everything.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest -q "$@"
# The slow tier (pyproject's addopts leave it out above): 200-turn chains on the embedded
# model, 9-13 minutes one after the other on two busy cores. Run after the rest, and only
# by a full run (no arguments): the two chains at once, each on a server of its own whose
# model computes on one thread, so each has a core.
if [ "$#" -eq 0 ]; then
  .venv/bin/pytest -q -m slow -k "truncation or several_windows" &
  first=$!
  .venv/bin/pytest -q -m slow -k "context_management" &
  second=$!
  failed=0
  wait "$first" || failed=1
  wait "$second" || failed=1
  exit "$failed"
fi

#!/usr/bin/env bash
# Installs the reference MCP server the tests run against (@modelcontextprotocol/server-everything,
# pinned) into ./.mcp-servers (git-ignored). scripts/test.sh calls it when it is missing;
# it needs node and npm. Measured: about 10-20 s on a warm npm cache.
set -euo pipefail
cd "$(dirname "$0")/.."
version=2026.8.31
target=.mcp-servers
if [ -x "$target/node_modules/.bin/mcp-server-everything" ] \
  && grep -q "\"version\": \"$version\"" "$target/node_modules/@modelcontextprotocol/server-everything/package.json"; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "npm not found: the MCP tests against server-everything will be skipped" >&2
  exit 0
fi
mkdir -p "$target"
start=$(date +%s)
npm install --prefix "$target" --no-audit --no-fund --silent "@modelcontextprotocol/server-everything@$version"
echo "server-everything $version installed in $(( $(date +%s) - start )) s" >&2

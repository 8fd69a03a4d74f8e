#!/usr/bin/env bash
# Installs Continuo into ./.venv. With --dev, also what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"

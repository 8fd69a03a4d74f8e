#!/usr/bin/env bash
# Installs Continuo if needed (only when pyproject.toml or a lock changed) and starts it.
# Arguments go to `continuo serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/continuo serve "$@"

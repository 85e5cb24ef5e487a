#!/usr/bin/env bash
# Bootstrap this machine if needed, then start Spaceport (arguments go to `spaceport up`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
exec .venv/bin/spaceport up --with-samples "$@"

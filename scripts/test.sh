#!/usr/bin/env bash
# Sets up (see setup.sh), runs the static checks (check.sh) and the whole test
# suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/check.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

#!/usr/bin/env bash
# Sets up (see setup.sh) and starts the demo: the sketch world streamed to a
# local RTMP server, prompts typed here, the console in the browser.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/streambot demo "$@"

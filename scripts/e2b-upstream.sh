#!/bin/sh
# Run the e2b SDKs' own integration tests against `sandboxkit e2b` on loopback.
# Usage: scripts/e2b-upstream.sh DIR [--suite e2b|code-interpreter] [pytest args...]
# DIR/e2b and DIR/code-interpreter are the upstream test folders (see scripts/e2b_upstream.py).
set -eu
here=$(dirname "$0")
exec "${PYTHON:-python3}" "$here/e2b_upstream.py" "$@"

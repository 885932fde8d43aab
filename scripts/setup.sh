#!/usr/bin/env bash
# One-time setup on a fresh Debian/Ubuntu machine: a running Docker engine, a venv with
# sandboxkit installed, the base image (bootstrapped offline from the apt mirror when no
# registry answers), every language's image, and PostgreSQL's binaries (the fleet tests
# start their own server), and the official judge0 and Piston clients the tests drive.
# Safe to run again: it only does what is missing.
#
# What it costs from a bare machine (2 cores, a nearby Debian mirror): about 10-20
# minutes and ~18 GB of disk, nearly all of it the ~50 language images (python alone:
# ~330 MB, under a minute; swift, on a trixie base, 2 GB). Everything is for the full
# test suite.
#
# A lighter path, to use sandboxkit rather than test it:
#
#   SANDBOXKIT_LANGUAGES=python bash scripts/setup.sh     # or "python,cpp", ...
#
# builds only those images (plus the base), installs `.[cli]` instead of `.[dev]`, and
# skips PostgreSQL and the judge0 sdist (only the test suite uses them). Run it again
# without the variable to get the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

LANGUAGES="${SANDBOXKIT_LANGUAGES:-}"
LANGUAGES="${LANGUAGES//,/ }"
LANGUAGES="$(echo $LANGUAGES)" # trimmed; empty: every language

bash scripts/engine-up.sh
if [ -z "$LANGUAGES" ]; then
    bash scripts/postgres.sh install # Debian's postgresql when no initdb is found
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if [ -z "$LANGUAGES" ]; then
    .venv/bin/python -m pip install -q -e '.[dev]'
else
    .venv/bin/python -m pip install -q -e '.[cli]'
fi

.venv/bin/sandboxkit images bootstrap
if [ -z "$LANGUAGES" ]; then
    .venv/bin/sandboxkit images build --quiet -j 2 # every built-in language; only what is missing
else
    # shellcheck disable=SC2086 # one argument per language
    .venv/bin/sandboxkit images build $LANGUAGES
    echo "[setup] built: $LANGUAGES (other languages build on first use, or with" \
        "\`.venv/bin/sandboxkit images build NAME\`)" >&2
    exit 0
fi

# the official judge0 client's own test suite (in its sdist only), run against
# `sandboxkit serve` by tests/test_judge0_official.py
J0=$(.venv/bin/python -c "from importlib.metadata import version; print(version('judge0'))")
if [ ! -f ".cache/judge0-sdist/judge0-$J0.tar.gz" ]; then
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d .cache/judge0-sdist "judge0==$J0"
fi

# Piston's official Node client (piston-client, from npm into .cache/piston-client),
# driven against `sandboxkit serve` by tests/test_piston_api.py: Node.js and npm first
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
.venv/bin/python tests/piston_client.py >/dev/null

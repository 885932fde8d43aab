#!/usr/bin/env bash
# One-time setup on a fresh Debian/Ubuntu machine: a running Docker engine, a venv with
# sandboxkit installed, the base image (bootstrapped offline from the apt mirror when no
# registry answers), every language's image, and PostgreSQL's binaries (the fleet tests
# start their own server). Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/engine-up.sh
bash scripts/postgres.sh install  # Debian's postgresql when no initdb is found

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[dev]'

.venv/bin/sandboxkit images bootstrap
.venv/bin/sandboxkit images build --quiet -j 2   # every built-in language; only what is missing

# the official judge0 client's own test suite (in its sdist only), run against
# `sandboxkit serve` by tests/test_judge0_official.py
J0=$(.venv/bin/python -c "from importlib.metadata import version; print(version('judge0'))")
if [ ! -f ".cache/judge0-sdist/judge0-$J0.tar.gz" ]; then
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d .cache/judge0-sdist "judge0==$J0"
fi

#!/usr/bin/env bash
# What the browser tests need, installed idempotently (tests/browser/conftest.py runs this when
# something is missing; CI runs as root):
#   - Debian's Chromium at /usr/bin/chromium (a `playwright install` download cannot work
#     where only package registries are reachable, and is not needed: the tests drive this one);
#   - the playwright Python package (the driver only) in the interpreter given as $PYTHON.
set -euo pipefail

PYTHON=${PYTHON:-python3}
CHROMIUM=/usr/bin/chromium

if [ ! -x "$CHROMIUM" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to apt-get install chromium" >&2; exit 1; }
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -q chromium fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version 2>/dev/null | grep -i chromium

if ! "$PYTHON" -c "import playwright.sync_api" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet "playwright>=1.45"
fi
"$PYTHON" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"

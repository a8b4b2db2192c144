#!/usr/bin/env bash
# Set LeadScore up from nothing on Debian 12 / Python 3.11 (no Docker), then run one thing:
#   bash infra/bootstrap.sh demo   # servers up, schema applied, the main job on the embedded servers
#   bash infra/bootstrap.sh test   # the whole test suite against real servers
#   bash infra/bootstrap.sh        # only install
# Idempotent: a second run reuses the venv unless pyproject.toml or requirements.lock.txt changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${LEADSCORE_VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# 1. System packages: Redis and Prometheus (with promtool) come from Debian; PostgreSQL+pgvector, the broker and
#    the Evidently UI come as Python wheels.
apt_need() {  # apt_need PACKAGE BINARY
  command -v "$2" >/dev/null 2>&1 || [ -x "/usr/bin/$2" ] && return 0
  step "installing $1 (apt)"
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$1" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$1" >/dev/null; } \
      || die "apt-get could not install $1"
  else
    die "$2 is missing: run 'sudo apt-get install -y --no-install-recommends $1' and try again"
  fi
}
apt_need redis-server redis-server
apt_need prometheus prometheus

# 2. The venv with the pinned, known-good set. torch goes first and alone: pip takes the CPU build on disk,
#    and nothing after it may pull a newer (CUDA, several GB) torch.
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found: LeadScore needs Python 3.11 (set PYTHON=/path/to/python3.11)"
stamp="$VENV/.leadscore-install"
want=$(cat pyproject.toml requirements.lock.txt | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "creating $VENV and installing the pinned dependencies (a few minutes the first time)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
  pip install "torch==2.13.0"
  pip install -c requirements.lock.txt -e ".[dev]" --config-settings editable_mode=compat
  "$VENV/bin/python" -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
    || die "the venv holds torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), not 2.13.0"
  echo "$want" > "$stamp"
fi
export PATH="$PWD/$VENV/bin:$PATH"

# 3. For the tests only: Debian's Chromium (the console's browser tests drive it through Playwright, which never
#    downloads a browser of its own) and axe-core from npm (pinned by tests/browser/package-lock.json).
if [ "${1:-install}" = test ]; then
  apt_need chromium chromium
  if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ]; then
    command -v npm >/dev/null 2>&1 || apt_need npm npm
    step "installing axe-core (npm ci)"
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in tests/browser failed"
  fi
fi

case "${1:-install}" in
  install) step "installed: activate with 'source $VENV/bin/activate', then 'leadscore --help'" ;;
  demo)    step "running the main job"; exec leadscore demo ;;
  test)    step "running the test suite"; shift; exec python -m pytest "$@" ;;
  *)       die "unknown command '$1': use demo, test or nothing" ;;
esac

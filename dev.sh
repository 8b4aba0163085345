#!/usr/bin/env bash
# Set up everything this project needs on a fresh machine, then run one job:
#   bash dev.sh demo [DIR]   -> build the demo measurements and run the main job on them
#   bash dev.sh test [ARGS]  -> run the whole test suite (pytest ARGS)
#   bash dev.sh setup        -> only set up
set -euo pipefail
cd "$(dirname "$0")"
job="${1:-setup}"; shift || true

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha1sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,jupyter]'
  touch "$stamp"
fi

install_chromium() {
  # Debian's chromium for the browser tests (playwright drives it; never `playwright install`).
  if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium) \
      >/tmp/imagebinner-apt.log 2>&1 || echo "dev.sh: could not install chromium (see /tmp/imagebinner-apt.log); browser tests will be skipped" >&2
  fi
}

case "$job" in
  setup) install_chromium ;;
  demo) exec .venv/bin/imagebinner demo -o "${1:-demo}" --overwrite ;;
  test) install_chromium; exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: bash dev.sh setup|demo [DIR]|test [PYTEST ARGS]" >&2; exit 2 ;;
esac

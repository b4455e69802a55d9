#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian/Raspberry Pi OS machine, then run
# the linters, the type checker and the tests. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || [ -x /usr/bin/mosquitto_passwd ] || need_apt+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # Debian starts a system mosquitto on :1883 after install; the tests start their own.
    $SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi

# -- promtool ---------------------------------------------------------------------------------
# tests/daemon/test_metrics.py runs `promtool check metrics` on a live relay's output (and skips
# that test without it). Debian ships promtool in the prometheus package; its server is not wanted.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing promtool (Debian package prometheus)"
    if $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; then
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    else
        echo "promtool unavailable: the promtool metrics test will be skipped"
    fi
fi
# -- end of promtool --------------------------------------------------------------------------

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip

# -- dependencies -----------------------------------------------------------------------------
# The tested set (constraints.txt) by default; RELAYD_DEPS=newest installs the newest versions
# pyproject.toml's bounds allow instead, to catch a release that breaks relayd before a relay
# installs it.
if [ "${RELAYD_DEPS:-pinned}" = newest ]; then
    echo "== dependencies: newest allowed by pyproject.toml"
    .venv/bin/pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
else
    .venv/bin/pip install -q -e '.[dev]' -c constraints.txt
fi
# -- end of dependencies ----------------------------------------------------------------------

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check relayd tui
echo "== mypy (strict: relayd/, tui/)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

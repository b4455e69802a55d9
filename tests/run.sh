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
# The real Meshtastic firmware (meshtasticd 2.8.0, SimRadio) for tests/firmware: $RELAYD_MESHTASTICD or
# ../shared/meshtasticd/meshtasticd. Its wrapper brings the libraries it was built against (lib/ beside
# it); only glibc and libstdc++ come from the system. Ask the dynamic loader what is still missing and
# install the Debian packages that provide it. Without the binary the firmware tests skip, except
# under CI=true where they fail.
meshtasticd_bin=${RELAYD_MESHTASTICD:-$(pwd)/../shared/meshtasticd/meshtasticd}
if [ -x "$meshtasticd_bin" ]; then
    export RELAYD_MESHTASTICD="$meshtasticd_bin"
    fw_dir=$(cd "$(dirname "$meshtasticd_bin")" && pwd)
    fw_elf="$fw_dir/meshtasticd.bin"
    [ -f "$fw_elf" ] || fw_elf="$meshtasticd_bin"
    missing=$(LD_LIBRARY_PATH="$fw_dir/lib" ldd "$fw_elf" 2>/dev/null | awk '/not found/ {print $1}' || true)
    for lib in $missing; do
        case $lib in
            libstdc++*) need_apt+=(libstdc++6) ;;
            libgcc_s*) need_apt+=(libgcc-s1) ;;
            libusb-1.0*) need_apt+=(libusb-1.0-0) ;;
            libyaml-cpp*) need_apt+=(libyaml-cpp0.7) ;;
            libjsoncpp*) need_apt+=(libjsoncpp25) ;;
            libuv*) need_apt+=(libuv1) ;;
            libgpiod*) need_apt+=(libgpiod2) ;;
            libi2c*) need_apt+=(libi2c0) ;;
            libulfius*) need_apt+=(libulfius2.7) ;;
            liborcania*) need_apt+=(liborcania2.3) ;;
            libbsd*) need_apt+=(libbsd0) ;;
            *) need_apt+=(libc6) ;;
        esac
    done
elif [ "${CI:-}" = "true" ]; then
    echo "CI=true but meshtasticd is missing at $meshtasticd_bin (set RELAYD_MESHTASTICD); the firmware tests will fail" >&2
else
    echo "meshtasticd not found at $meshtasticd_bin: the real-firmware tests (tests/firmware) will be skipped" >&2
fi

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
.venv/bin/ruff format --check relayd tui tests bench
echo "== mypy (strict: relayd/, tui/, tests/, bench/; pyproject.toml [tool.mypy] files)"
.venv/bin/mypy
echo "== pytest"
# Two workers (pytest-xdist): most end-to-end tests wait on simulated air time and subprocess
# relays rather than on the CPU, so two at once halve the suite's wall time on a 2-core
# machine. RELAYD_TEST_WORKERS=0 runs everything in one process (e.g. with -x or --pdb).
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${RELAYD_TEST_WORKERS:-2}" "$@"

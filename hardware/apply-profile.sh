#!/usr/bin/env bash
# Apply a relayd radio profile to a Meshtastic radio with the official `meshtastic` CLI, then set
# the network's two channels ("alerts", "reports") and their keys.
#
# The keys never live in the repository or the profile: the operator supplies them in
# environment variables (every radio in one network must share them), or generates them once
# for a brand-new network with --generate-psk.
#
# Note: the meshtastic CLI only accepts a channel key on its command line, so while the CLI runs
# (a few seconds) other local users can see it in `ps`. Run this on a single-user machine (the
# relay Pi, an operator's laptop), not on a shared server.
set -euo pipefail

readonly DEFAULT_PORT=/dev/meshradio
readonly PRIMARY_CHANNEL=alerts
readonly SECONDARY_CHANNEL=reports
# The radio reboots after `--configure` writes LoRa settings; give it time before the next step.
REBOOT_WAIT_S=${RELAYD_APPLY_REBOOT_WAIT_S:-10}
readonly RETRY_ATTEMPTS=6
RETRY_DELAY_S=${RELAYD_APPLY_RETRY_DELAY_S:-5}

prog=$(basename "$0")

usage() {
    cat <<EOF
Usage: $prog [--port DEV | --host HOST] [--generate-psk] [--dry-run] PROFILE.yaml

Apply a relayd radio profile (hardware/profiles/*.yaml) with 'meshtastic --configure', then
set the channels every relayd radio shares:
  index 0  PRIMARY    "$PRIMARY_CHANNEL"   key from \$RELAYD_ALERTS_PSK
  index 1  SECONDARY  "$SECONDARY_CHANNEL"  key from \$RELAYD_REPORTS_PSK
with position sharing off (position_precision 0) on both.

Options:
  -p, --port DEV       serial device of the radio (default: $DEFAULT_PORT, see hardware/udev/)
  -t, --host HOST      the radio is reached over TCP (Wi-Fi radios, port 4403) instead
  -g, --generate-psk   for a NEW network only: generate keys for unset variables with
                       'openssl rand -base64 32' and print them once, to save and reuse
  -n, --dry-run        print the meshtastic commands (keys masked) instead of running them
  -h, --help           show this help

Environment:
  RELAYD_ALERTS_PSK    base64 of 32 random bytes (AES-256); the same on every radio
  RELAYD_REPORTS_PSK   base64 of 32 random bytes; the same on every radio
  MESHTASTIC           meshtastic CLI to run (default: 'meshtastic' on PATH, else
                       /opt/relayd/venv/bin/meshtastic, which relayd's install provides)

Stop relayd first if it uses this radio:  sudo systemctl stop relayd
EOF
}

die() {
    printf '%s: error: %s\n' "$prog" "$1" >&2
    exit "${2:-1}"
}

usage_error() {
    printf '%s: error: %s\n' "$prog" "$1" >&2
    printf "Try '%s --help'.\n" "$prog" >&2
    exit 2
}

info() {
    printf '%s: %s\n' "$prog" "$1" >&2
}

# --- arguments --------------------------------------------------------------------------------
port=""
host=""
generate=false
dry_run=false
profile=""

while (($# > 0)); do
    case "$1" in
    -p | --port)
        (($# >= 2)) || usage_error "$1 needs a device path"
        port=$2
        shift 2
        ;;
    -t | --host)
        (($# >= 2)) || usage_error "$1 needs a host name or address"
        host=$2
        shift 2
        ;;
    -g | --generate-psk)
        generate=true
        shift
        ;;
    -n | --dry-run)
        dry_run=true
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    --)
        shift
        break
        ;;
    -*)
        usage_error "unknown option: $1"
        ;;
    *)
        [[ -z $profile ]] || usage_error "only one PROFILE may be given (got '$profile' and '$1')"
        profile=$1
        shift
        ;;
    esac
done
if (($# > 0)); then
    [[ -z $profile && $# -eq 1 ]] || usage_error "only one PROFILE may be given"
    profile=$1
fi

[[ -n $profile ]] || usage_error "no PROFILE given (e.g. hardware/profiles/relay-node.yaml)"
[[ -f $profile && -r $profile ]] || die "profile not found or not readable: $profile"
[[ -z $port || -z $host ]] || usage_error "--port and --host are mutually exclusive"

if [[ -n $host ]]; then
    connection=(--host "$host")
else
    port=${port:-$DEFAULT_PORT}
    connection=(--port "$port")
fi

# --- keys -------------------------------------------------------------------------------------
# Meshtastic channel keys are AES-128 (16 bytes) or AES-256 (32 bytes). Anything else - the
# one-byte "default" key everyone knows, a typo, a "CHANGE-ME" placeholder - is refused.
psk_bytes() {
    local decoded
    decoded=$(printf '%s' "$1" | base64 -d 2>/dev/null | wc -c) || return 1
    printf '%s' "$decoded"
}

resolve_psk() {
    local var=$1 value=${!1:-}
    if [[ -z $value ]]; then
        if [[ $generate != true ]]; then
            die "$var is not set. Every radio in a network shares the channel keys: export the
  network's existing key, or - for the first radio of a NEW network only - pass --generate-psk."
        fi
        command -v openssl >/dev/null || die "openssl not found (sudo apt-get install openssl)"
        value=$(openssl rand -base64 32)
        info "generated a new key for $var (shown once; store it in your password manager"
        info "and give it to every other radio of this network):"
        printf '  export %s=%q\n' "$var" "$value" >&2
    fi
    local n
    n=$(psk_bytes "$value") || n=0
    if [[ $n != 32 && $n != 16 ]]; then
        die "$var is not a base64-encoded 16- or 32-byte key (decoded to $n bytes).
  Generate one with: openssl rand -base64 32"
    fi
    printf '%s' "$value"
}

alerts_psk=$(resolve_psk RELAYD_ALERTS_PSK)
reports_psk=$(resolve_psk RELAYD_REPORTS_PSK)
if [[ $alerts_psk == "$reports_psk" ]]; then
    info "warning: the alerts and reports channels share one key"
fi

# --- the CLI ----------------------------------------------------------------------------------
meshtastic_cli=${MESHTASTIC:-}
if [[ -z $meshtastic_cli ]]; then
    if command -v meshtastic >/dev/null; then
        meshtastic_cli=meshtastic
    elif [[ -x /opt/relayd/venv/bin/meshtastic ]]; then
        meshtastic_cli=/opt/relayd/venv/bin/meshtastic
    fi
fi
if [[ $dry_run != true ]]; then
    if [[ -z $meshtastic_cli ]] || ! command -v "$meshtastic_cli" >/dev/null; then
        die "the meshtastic CLI was not found. Install relayd (its venv has it) or: pipx install meshtastic"
    fi
    if [[ -z $host && ! -e $port ]]; then
        die "no such device: $port. Is the radio plugged in? Is hardware/udev/99-meshradio.rules
  installed (ls -l /dev/meshradio)? Or pass --port /dev/ttyUSB0 / --port /dev/ttyACM0."
    fi
    # Two programs talking to one serial API at once corrupt each other's frames. relayd uses
    # /dev/meshradio; another port (a handheld on the same Pi) is fine while it runs.
    if [[ -z $host ]] && [[ $(readlink -f -- "$port") == "$(readlink -f -- "$DEFAULT_PORT")" ]] &&
        command -v systemctl >/dev/null && systemctl is-active --quiet relayd 2>/dev/null; then
        die "relayd is running and using this radio: sudo systemctl stop relayd (start it again afterwards)"
    fi
fi
meshtastic_cli=${meshtastic_cli:-meshtastic}

mask() {
    # Print a command with channel keys replaced, for --dry-run and error messages.
    local arg out=()
    for arg in "$@"; do
        case "$arg" in
        base64:*) out+=("base64:<secret>") ;;
        *) out+=("$(printf '%q' "$arg")") ;;
        esac
    done
    printf '%s\n' "${out[*]}"
}

run() {
    if [[ $dry_run == true ]]; then
        mask "$@"
        return 0
    fi
    "$@"
}

retry() {
    # retry CMD...: the radio may still be rebooting (USB re-enumerates, TCP refuses).
    local attempt
    for ((attempt = 1; ; attempt++)); do
        if run "$@"; then
            return 0
        fi
        if ((attempt >= RETRY_ATTEMPTS)); then
            return 1
        fi
        info "radio not ready, retrying in ${RETRY_DELAY_S}s ($attempt/$RETRY_ATTEMPTS)"
        sleep "$RETRY_DELAY_S"
    done
}

# --- apply ------------------------------------------------------------------------------------
info "applying $profile to ${host:-$port}"
run "$meshtastic_cli" "${connection[@]}" --configure "$profile" ||
    die "'meshtastic --configure $profile' failed (see its output above)"

if [[ $dry_run != true && $REBOOT_WAIT_S != 0 ]]; then
    info "waiting ${REBOOT_WAIT_S}s for the radio to reboot"
    sleep "$REBOOT_WAIT_S"
fi

info "setting channel 0 (PRIMARY) \"$PRIMARY_CHANNEL\""
retry "$meshtastic_cli" "${connection[@]}" --ch-index 0 \
    --ch-set name "$PRIMARY_CHANNEL" \
    --ch-set psk "base64:$alerts_psk" \
    --ch-set module_settings.position_precision 0 ||
    die "could not set channel 0 \"$PRIMARY_CHANNEL\" after $RETRY_ATTEMPTS attempts"

info "setting channel 1 (SECONDARY) \"$SECONDARY_CHANNEL\""
retry "$meshtastic_cli" "${connection[@]}" --ch-index 1 \
    --ch-set name "$SECONDARY_CHANNEL" \
    --ch-set psk "base64:$reports_psk" \
    --ch-set module_settings.position_precision 0 ||
    die "could not set channel 1 \"$SECONDARY_CHANNEL\" after $RETRY_ATTEMPTS attempts"

info "done. Check with: $meshtastic_cli ${connection[*]} --info"
info "(its channel URL and --qr-all contain the keys: show them only to your own radios)"

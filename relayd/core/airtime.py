"""LoRa time-on-air (Semtech SX127x/SX126x datasheet formula) for Meshtastic modem presets.

Used by the simulator's medium, the daemon's airtime budget and the benchmarks, so that all
three agree on what a frame costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Meshtastic prepends a 16-byte unencrypted header (dest, sender, id, flags, channel hash,
# next hop, relay node) to the encrypted Data protobuf on every LoRa packet.
MESHTASTIC_HEADER_BYTES = 16
# Meshtastic uses a 16-symbol preamble on all presets (firmware RadioInterface).
MESHTASTIC_PREAMBLE_SYMBOLS = 16
# The Data protobuf's payload field may hold at most this many bytes (firmware
# DATA_PAYLOAD_LEN = 255 - 16 header - 6 protobuf overhead).
MAX_DATA_PAYLOAD_BYTES = 233
# What a client can really send: the firmware adds a 2-byte bitfield to every Data it
# originates, and the encoded Data must fit 255 - 16 header bytes (Router perhapsEncode:
# 2 portnum + 3 payload tag/length + payload + 2 bitfield <= 239), so a channel broadcast
# carries at most 232 payload bytes. Measured on meshtasticd 2.8.0: 232 queued, 233 TOO_LARGE.
MAX_BROADCAST_PAYLOAD_BYTES = 232
# A direct message the firmware encrypts with PKI also carries a 12-byte tag and nonce
# (MESHTASTIC_PKC_OVERHEAD): 220 payload bytes.
MAX_PKI_DM_PAYLOAD_BYTES = 220
# The firmware switches on low-data-rate optimisation above this symbol time.
_LDRO_THRESHOLD_S = 0.016


@dataclass(frozen=True, slots=True)
class LoRaPreset:
    """PHY settings of one modem preset."""

    name: str
    spreading_factor: int
    bandwidth_hz: float
    coding_rate_denominator: int  # 5..8 for CR 4/5..4/8
    preamble_symbols: int = MESHTASTIC_PREAMBLE_SYMBOLS
    explicit_header: bool = True
    crc_on: bool = True

    @property
    def symbol_time_s(self) -> float:
        return float(2**self.spreading_factor) / self.bandwidth_hz

    @property
    def low_data_rate_optimize(self) -> bool:
        return self.symbol_time_s > _LDRO_THRESHOLD_S


# Source: Meshtastic firmware RadioInterface::applyModemConfig (bandwidth kHz, SF, CR).
PRESETS: dict[str, LoRaPreset] = {
    p.name: p
    for p in (
        LoRaPreset("SHORT_TURBO", 7, 500_000, 5),
        LoRaPreset("SHORT_FAST", 7, 250_000, 5),
        LoRaPreset("SHORT_SLOW", 8, 250_000, 5),
        LoRaPreset("MEDIUM_FAST", 9, 250_000, 5),
        LoRaPreset("MEDIUM_SLOW", 10, 250_000, 5),
        LoRaPreset("LONG_FAST", 11, 250_000, 5),
        LoRaPreset("LONG_MODERATE", 11, 125_000, 8),
        LoRaPreset("LONG_SLOW", 12, 125_000, 8),
        LoRaPreset("VERY_LONG_SLOW", 12, 62_500, 8),
    )
}
LONG_FAST = PRESETS["LONG_FAST"]


def preset_by_name(name: str) -> LoRaPreset:
    """Look a preset up by its Meshtastic name (case-insensitive, `LongFast` or `LONG_FAST`)."""
    key = name.upper().replace("-", "_")
    if key not in PRESETS:
        compact = {k.replace("_", ""): k for k in PRESETS}
        key = compact.get(key.replace("_", ""), key)
    try:
        return PRESETS[key]
    except KeyError:
        raise ValueError(f"unknown modem preset {name!r}; expected one of {', '.join(PRESETS)}") from None


def time_on_air_s(phy_payload_bytes: int, preset: LoRaPreset = LONG_FAST) -> float:
    """Seconds on air for a LoRa packet carrying `phy_payload_bytes` (Semtech AN1200.13)."""
    if phy_payload_bytes < 0:
        raise ValueError("payload length must be non-negative")
    sf = preset.spreading_factor
    t_sym = preset.symbol_time_s
    de = 1 if preset.low_data_rate_optimize else 0
    ih = 0 if preset.explicit_header else 1
    crc = 1 if preset.crc_on else 0
    cr = preset.coding_rate_denominator - 4
    numerator = 8 * phy_payload_bytes - 4 * sf + 28 + 16 * crc - 20 * ih
    payload_symbols = 8 + max(math.ceil(numerator / (4 * (sf - 2 * de))) * (cr + 4), 0)
    preamble_s = (preset.preamble_symbols + 4.25) * t_sym
    return preamble_s + payload_symbols * t_sym


def data_protobuf_bytes(app_payload_bytes: int) -> int:
    """Encoded size of a Meshtastic `Data` message carrying an app payload.

    portnum (tag + 1-byte varint) + payload (tag + varint length + bytes).
    """
    length_varint = 1 if app_payload_bytes < 128 else 2
    return 2 + 1 + length_varint + app_payload_bytes


def mesh_frame_time_on_air_s(app_payload_bytes: int, preset: LoRaPreset = LONG_FAST) -> float:
    """Time on air of one Meshtastic packet whose Data payload is `app_payload_bytes` long."""
    return time_on_air_s(MESHTASTIC_HEADER_BYTES + data_protobuf_bytes(app_payload_bytes), preset)

"""Doctor's radio checks: the device node, and the device API handshake (serial or TCP)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from relayd.daemon.config import RadioConfig
from relayd.doctor.results import CheckResult, Level, fail, ok, warn
from relayd.meshapi.framing import START2, StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    MalformedMessageError,
    from_radio_variant,
    node_id,
    parse_from_radio,
    to_radio_disconnect,
    to_radio_want_config,
)

# The official client sends this many START2 bytes to wake a sleeping serial API before its
# first frame; the firmware's stream decoder skips them.
_SERIAL_WAKE_BYTES = 32


# --- radio -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RadioInfo:
    node: int | None
    firmware: str | None


class Handshake:
    """The device API handshake as a sans-I/O state machine: feed it bytes, ask if it is done."""

    def __init__(self, nonce: int) -> None:
        self.nonce = nonce
        self._decoder = StreamDecoder()
        self.node: int | None = None
        self.firmware: str | None = None
        self.complete = False

    def request(self) -> bytes:
        return encode_frame(to_radio_want_config(self.nonce))

    def feed(self, data: bytes) -> bool:
        for frame in self._decoder.feed(data):
            try:
                msg = parse_from_radio(frame)
            except MalformedMessageError:
                continue
            variant = from_radio_variant(msg)
            if variant == "my_info":
                self.node = int(msg.my_info.my_node_num)
            elif variant == "metadata":
                self.firmware = str(msg.metadata.firmware_version) or None
            elif variant == "config_complete_id" and int(msg.config_complete_id) == self.nonce:
                self.complete = True
        return self.complete

    @property
    def info(self) -> RadioInfo:
        return RadioInfo(self.node, self.firmware)


class HandshakeTimeoutError(Exception):
    """The radio answered too little (or nothing) within the timeout."""


def assess_serial_device(device: str) -> CheckResult:
    """Does the device node exist, is it a character device, may this user open it?"""
    path = Path(device)
    label = f"serial:{device}"
    try:
        st = path.stat()
    except FileNotFoundError:
        dangling = " (a dangling symlink)" if path.is_symlink() else ""
        return fail(
            "device",
            f"{label} does not exist{dangling}",
            "plug the radio in; `ls -l /dev/meshradio /dev/ttyUSB* /dev/ttyACM*`; "
            "install hardware/udev/99-meshradio.rules (docs/deployment.md, section 4)",
        )
    except PermissionError:
        return fail("device", f"{label}: cannot stat it", f"check the permissions of {path.parent}")
    if not stat.S_ISCHR(st.st_mode):
        return fail(
            "device",
            f"{label} is not a character device (a serial port or pty)",
            "point [[radio]] device at the radio's tty, e.g. serial:///dev/meshradio",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        group = _group_name(st.st_gid)
        return fail(
            "device",
            f"{label} is not readable and writable by this user (owner group {group})",
            f"sudo usermod -aG {group} $USER (then log in again); the service gets it via "
            "SupplementaryGroups=dialout",
        )
    return ok("device", f"{label} is a character device, readable and writable")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


async def tcp_handshake(host: str, port: int, timeout_s: float, nonce: int) -> RadioInfo:
    """Connect, send want_config_id and read until config_complete_id. Raises OSError/timeout."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        shake = Handshake(nonce)
        writer.write(shake.request())
        await writer.drain()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    data = await reader.read(4096)
                    if not data:
                        raise ConnectionResetError("the radio closed the connection during the handshake")
                    if shake.feed(data):
                        break
        except TimeoutError:
            raise HandshakeTimeoutError from None
        with contextlib.suppress(OSError):
            # Tell the firmware we are done, so it frees the API for the relay at once.
            writer.write(encode_frame(to_radio_disconnect()))
            await writer.drain()
        return shake.info
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class SerialBusyError(Exception):
    """Another process (a running relay, most likely) holds the serial port."""


async def serial_handshake(device: str, timeout_s: float, nonce: int) -> RadioInfo:
    import serial  # noqa: PLC0415 - pyserial only for serial radios

    try:
        port = serial.Serial(device, baudrate=115200, timeout=0, write_timeout=0, exclusive=True)
    except serial.SerialException as exc:
        # pyserial's `exclusive` lock (flock) held by another process, or a busy tty.
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            raise SerialBusyError from exc
        raise ConnectionError(f"cannot open {device}") from exc
    loop = asyncio.get_running_loop()
    fd: int = port.fileno()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        chunks.put_nowait(data)

    loop.add_reader(fd, readable)
    try:
        shake = Handshake(nonce)
        os.write(fd, bytes([START2]) * _SERIAL_WAKE_BYTES + shake.request())
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    data = await chunks.get()
                    if not data:
                        raise ConnectionResetError("the serial port went away during the handshake")
                    if shake.feed(data):
                        return shake.info
        except TimeoutError:
            raise HandshakeTimeoutError from None
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            port.close()


def _radio_ok(radio: RadioConfig, info: RadioInfo) -> CheckResult:
    node = node_id(info.node) if info.node is not None else "unknown"
    firmware = info.firmware or "unknown"
    return ok("radio", f"{radio.label} handshake complete (node {node}, firmware {firmware})")


async def check_radio(radio: RadioConfig, timeout_s: float) -> list[CheckResult]:
    nonce = int.from_bytes(os.urandom(4), "big") or 1
    if radio.kind == "serial":
        access = assess_serial_device(radio.device)
        if access.level is Level.FAIL:
            return [access, fail("radio", f"{radio.label} handshake not tried", "fix the device first")]
        try:
            info = await serial_handshake(radio.device, timeout_s, nonce)
        except SerialBusyError:
            return [
                access,
                warn(
                    "radio",
                    f"{radio.label} is in use by another process (a running relay?)",
                    "fine if relayd is running (`systemctl status relayd`); "
                    "to test the radio itself: sudo systemctl stop relayd, then run doctor again",
                ),
            ]
        except HandshakeTimeoutError:
            return [access, _no_handshake(radio, timeout_s)]
        except (OSError, ConnectionError) as exc:
            return [
                access,
                fail("radio", f"{radio.label}: {exc}", "unplug and replug the radio; check `dmesg | tail`"),
            ]
        return [access, _radio_ok(radio, info)]
    where = f"{radio.host}:{radio.port}"
    try:
        info = await tcp_handshake(radio.host, radio.port, timeout_s, nonce)
    except ConnectionRefusedError:
        return [
            fail(
                "device",
                f"{radio.label} connection refused",
                f"is the radio on and its Wi-Fi/Ethernet API enabled? `ping {radio.host}`; "
                "the API port is 4403",
            ),
            fail("radio", f"{radio.label} handshake not tried", "fix the connection first"),
        ]
    except HandshakeTimeoutError:
        return [ok("device", f"{where} accepts TCP connections"), _no_handshake(radio, timeout_s)]
    except TimeoutError:
        return [
            fail(
                "device",
                f"{radio.label} no answer within {timeout_s:g} s",
                f"wrong address or a firewall? `ping {radio.host}`",
            ),
            fail("radio", f"{radio.label} handshake not tried", "fix the connection first"),
        ]
    except OSError as exc:
        return [
            fail("device", f"{radio.label} cannot connect: {exc.strerror or exc}", "check the address"),
            fail("radio", f"{radio.label} handshake not tried", "fix the connection first"),
        ]
    return [ok("device", f"{where} accepts TCP connections"), _radio_ok(radio, info)]


def _no_handshake(radio: RadioConfig, timeout_s: float) -> CheckResult:
    return fail(
        "radio",
        f"{radio.label} did not complete the API handshake within {timeout_s:g} s",
        "is it a Meshtastic radio with current firmware? Reboot it; "
        "another client (the phone app over Bluetooth, `meshtastic`) may be attached",
    )


# --- broker ----------------------------------------------------------------------------------

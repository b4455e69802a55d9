"""The byte streams under relayd's radio link: TCP, or a serial tty as the official client opens one.

relayd.daemon.radio speaks the device API over one of these; they know nothing about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from relayd.meshapi.framing import START2

log = logging.getLogger("relayd.radio")

# The official client opens a serial radio with a burst of START2 bytes so a radio in
# its debug console switches to the protobuf API (meshtastic StreamInterface).
WAKE_BURST = bytes([START2]) * 32


class Transport:
    """A byte stream to the radio: TCP (a network radio, the simulator) or a serial tty."""

    async def read(self) -> bytes:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class TcpTransport(Transport):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def read(self) -> bytes:
        data = await self.reader.read(4096)
        if not data:
            raise ConnectionResetError("radio closed the TCP connection")
        return data

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


class SerialTransport(Transport):
    """A tty (USB serial radio, or the simulator's pty) driven by the event loop's reader."""

    def __init__(self, device: str) -> None:
        import serial  # noqa: PLC0415 - pyserial only when a serial radio is configured

        try:
            self._serial = serial.Serial(device, baudrate=115200, timeout=0, write_timeout=0, exclusive=True)
        except serial.SerialException as exc:
            raise ConnectionError(f"cannot open {device}: {exc}") from exc
        self._fd: int = self._serial.fileno()
        clear_hupcl(self._fd)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._queue.put_nowait(None)
        else:
            self._queue.put_nowait(data)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise ConnectionResetError("serial radio went away (unplugged?)")
        return data

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + 2.0
        while view:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise ConnectionResetError(f"serial write failed: {exc.strerror}") from exc
            view = view[n:]
            if view:
                if time.monotonic() > deadline:
                    raise ConnectionResetError("serial write stalled")
                await asyncio.sleep(0.005)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            self._serial.close()


def clear_hupcl(fd: int) -> None:
    """Keep DTR up when the port closes: on many ESP32 boards a DTR drop resets the radio
    (the official client clears HUPCL for the same reason)."""
    try:
        import termios  # noqa: PLC0415 - POSIX only

        attrs = termios.tcgetattr(fd)
        attrs[2] &= ~termios.HUPCL
        termios.tcsetattr(fd, termios.TCSAFLUSH, attrs)
    except (ImportError, OSError, termios.error):
        log.debug("could not clear HUPCL on the radio's serial port")


__all__ = ["WAKE_BURST", "SerialTransport", "TcpTransport", "Transport", "clear_hupcl"]

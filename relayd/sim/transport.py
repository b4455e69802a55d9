"""Device-API transports of a simulated radio: a loopback TCP server and a pseudo-terminal.

Both feed raw bytes into a `PhoneSession` and write its framed FromRadio bytes back. They can
be "unplugged" (the client link drops and reconnects are refused) and plugged in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tty
from pathlib import Path

from relayd.sim.firmware import SimRadio
from relayd.sim.phoneapi import PhoneSession

log = logging.getLogger(__name__)

# A USB-serial bridge has a small buffer; when nobody reads, the firmware's writes are lost.
# We bound what we hold for an unread pty at the same order of magnitude.
PTY_OUTPUT_LIMIT_BYTES = 64 * 1024
_READ_CHUNK = 4096


class TcpApiServer:
    """The firmware's WiFi API (port 4403 on a real radio) on 127.0.0.1."""

    def __init__(self, radio: SimRadio, host: str = "127.0.0.1", port: int = 0) -> None:
        self.radio = radio
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Stop listening (reconnects are refused) and drop the connected client."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        if server is not None:
            # Python 3.11's wait_closed() also waits for every connection handler; a client
            # that never reads could hold it forever, so bound it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)

        def sink(data: bytes) -> None:
            if not writer.is_closing():
                writer.write(data)

        session = self.radio.attach(sink, writer.close)
        try:
            while True:
                data = await reader.read(_READ_CHUNK)
                if not data:
                    break
                session.feed(data)
                if writer.is_closing():
                    break
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.radio.detach(session)
            self._writers.discard(writer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)


class PtyApiPort:
    """The firmware's serial API over a pseudo-terminal.

    `path` is a stable symlink to the current pty slave (like a udev /dev/serial/by-id link):
    it disappears while the radio is unplugged and points at a fresh pty after replug.
    """

    def __init__(self, radio: SimRadio, link_dir: Path) -> None:
        self.radio = radio
        self.path = link_dir / f"{radio.name}.tty"
        self._master: int | None = None
        self._slave: int | None = None
        self._session: PhoneSession | None = None
        self._out = bytearray()
        self._writer_registered = False
        self.dropped_output_bytes = 0

    @property
    def plugged(self) -> bool:
        return self._master is not None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        # Raw mode: no echo, no line discipline -- bytes pass through untouched (pyserial
        # sets the same on its side, but the firmware must not depend on the client for it).
        tty.setraw(slave)
        tty.setraw(master)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        slave_path = os.ttyname(slave)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(slave_path)
        # The serial "connection" is permanent: the firmware cannot see a client come or go,
        # it only reacts to want_config_id (which restarts the handshake).
        self._session = self.radio.attach(self._write, self._on_session_closed, serial=True)
        loop.add_reader(master, self._on_readable)

    async def stop(self) -> None:
        """Unplug: the pty vanishes (the client's reads fail) and the path is removed."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        master, slave = self._master, self._slave
        self._master = self._slave = None
        session, self._session = self._session, None
        if session is not None:
            self.radio.detach(session)
        if master is not None:
            loop.remove_reader(master)
            if self._writer_registered:
                loop.remove_writer(master)
                self._writer_registered = False
            os.close(master)
        if slave is not None:
            os.close(slave)
        self._out.clear()

    def _on_session_closed(self) -> None:
        # The radio dropped this session (reboot / another client): the serial port itself
        # stays; a new session starts when the next bytes arrive.
        self._session = None

    def _on_readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, _READ_CHUNK)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            data = b""
        if not data:
            return
        if self._session is None or self.radio.session is not self._session:
            self._session = self.radio.attach(self._write, self._on_session_closed, serial=True)
        self._session.feed(data)

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        if len(self._out) + len(data) > PTY_OUTPUT_LIMIT_BYTES:
            self.dropped_output_bytes += len(data)
            return
        self._out.extend(data)
        self._flush()

    def _flush(self) -> None:
        if self._master is None:
            return
        while self._out:
            try:
                n = os.write(self._master, self._out)
            except BlockingIOError:
                break
            except OSError:
                self._out.clear()
                return
            del self._out[:n]
        loop = asyncio.get_running_loop()
        if self._out and not self._writer_registered:
            loop.add_writer(self._master, self._flush)
            self._writer_registered = True
        elif not self._out and self._writer_registered:
            loop.remove_writer(self._master)
            self._writer_registered = False

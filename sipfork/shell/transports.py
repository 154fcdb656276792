"""UDP and TCP on asyncio: bytes in to the core, bytes out from its effects.

RFC 3261 §18: a TCP stream is framed by Content-Length; a request that came
over a connection is answered on it, and a contact registered over TCP is
reached over the connection it registered from.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.framing import StreamFramer

log = logging.getLogger("sipfork.transport")

Deliver = Callable[[bytes, tuple[str, int], str], None]
MAX_DATAGRAM = 65507
# A burst (or a pause of ours) must not overflow the kernel's queue: the
# default ~200 KB holds a few hundred datagrams, and every one dropped there
# comes back as a retransmission (measured in benchmarks/: drops at 200
# calls/s with the default). The kernel caps it at net.core.rmem_max.
SOCKET_BUFFER = 4 * 1024 * 1024


# What a datagram of nothing but CR and LF (a keep-alive) starts with; any
# other datagram is delivered without copying it to strip it first.
_KEEP_ALIVE_START = (b"", b"\r", b"\n")


def peer(address: tuple) -> tuple[str, int]:  # type: ignore[type-arg]
    """(host, port) of a socket address; IPv6 scope and flow info dropped."""
    return sys.intern(address[0]), address[1]  # interned: kept by bindings and Timer J responses


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                except OSError as error:
                    log.debug("socket buffer not enlarged: %s", error)

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        if data[:1] in _KEEP_ALIVE_START and data.strip(b"\r\n") == b"":
            return  # a keep-alive (RFC 5626 §4.4.1 CRLF)
        self.deliver(data, addr if len(addr) == 2 else peer(addr), "udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a phone that went away: the branch's
        # transaction times out on its own.
        log.debug("udp error: %s", exc)

    def send(self, data: bytes, host: str, port: int) -> None:
        if self.transport is None:
            return
        if len(data) > MAX_DATAGRAM:
            log.warning("not sent: %d bytes is too large for UDP to %s:%d", len(data), host, port)
            return
        self.transport.sendto(data, (host, port))


class TcpConnections:
    """Every open TCP connection by peer address, inbound and outbound."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.by_peer: dict[tuple[str, int], TcpProtocol] = {}
        self.connecting: dict[tuple[str, int], list[bytes]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def protocol(self) -> TcpProtocol:
        return TcpProtocol(self)

    def send(self, data: bytes, host: str, port: int, alternate: tuple[str, int] | None = None) -> None:
        """Over the open connection to host:port, else over a new one — to
        ``alternate`` when there is one (the phone's listening address: the
        port it once connected from is not listening)."""
        connection = self.by_peer.get((host, port))
        if connection is None and alternate is not None:
            connection = self.by_peer.get(alternate)
            host, port = alternate
        if connection is not None:
            connection.write(data)
            return
        waiting = self.connecting.get((host, port))
        if waiting is not None:
            waiting.append(data)
            return
        self.connecting[(host, port)] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(host, port))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await loop.create_connection(self.protocol, host, port)
        except OSError as error:
            # The branch's transaction times out (Timer B/F): no answer.
            log.info("tcp connection to %s:%d failed: %s", host, port, error)
            self.connecting.pop((host, port), None)
            return
        for data in self.connecting.pop((host, port), []):
            protocol.write(data)

    def close(self) -> None:
        for connection in list(self.by_peer.values()):
            connection.close()


class TcpProtocol(asyncio.Protocol):
    def __init__(self, connections: TcpConnections) -> None:
        self.connections = connections
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = peer(transport.get_extra_info("peername"))
        self.connections.by_peer[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.framer.feed(data)
        except RemoteProtocolError as error:
            # Framing is lost for good on this stream (RFC 3261 §18.3).
            log.warning("closing tcp connection from %s:%d: %s", *self.peer, error)
            self.close()
            return
        for message in messages:
            self.connections.deliver(message, self.peer, "tcp")

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connections.by_peer.get(self.peer) is self:
            del self.connections.by_peer[self.peer]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

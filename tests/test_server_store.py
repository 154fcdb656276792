"""The running server (sipfork.shell.server) when its store fails under a
REGISTER: a real UDP client gets 500, then 200 once the store works again.

The server runs in this process on asyncio (not uvloop), so the test can
make the store's write fail; the phone is a plain UDP socket on the same
loop, its REGISTERs built and authorized with the registrar tests' helpers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import pytest

from sipfork.config import parse_config
from sipfork.shell.server import Server
from sipfork.sip.message import Response, parse_message
from tests.core.test_registrar import authorization, request_bytes
from tests.e2e.phones import free_port

CONFIG = """
[proxy]
domain = "pbx.local"
listen = ["udp:127.0.0.1:{port}"]
data_dir = "{data_dir}"

[[user]]
name = "alice"
password = "alice-secret"
"""


class UdpPhone:
    """alice's REGISTERs from one UDP socket on the running loop."""

    def __init__(self, proxy_port: int) -> None:
        self.proxy = ("127.0.0.1", proxy_port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.port = self.socket.getsockname()[1]

    def register(self, cseq: int, headers: Iterable[tuple[str, str]] = ()) -> bytes:
        return request_bytes(via=f"127.0.0.1:{self.port}", call_id="reg-alice@test", cseq=cseq,
                             contacts=(f"<sip:alice@127.0.0.1:{self.port}>",), headers=tuple(headers))

    async def send(self, data: bytes) -> Response:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.socket, data, self.proxy)
        answer, _ = await asyncio.wait_for(loop.sock_recvfrom(self.socket, 65535), timeout=5)
        response = parse_message(answer)
        assert isinstance(response, Response)
        return response


async def scenario(server: Server, phone: UdpPhone, monkeypatch: pytest.MonkeyPatch) -> None:
    challenge = await phone.send(phone.register(1))
    assert challenge.status == 401
    offer = challenge.header_lines("WWW-Authenticate")[0]

    def broken_write(changes: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patch:
        patch.setattr(server.store, "write", broken_write)
        data = phone.register(2, [("Authorization", authorization(offer, username="alice", password="alice-secret"))])
        refused = await phone.send(data)
        assert (refused.status, refused.header("Retry-After")) == (500, "5")
        again = await phone.send(data)  # a retransmission: the 500 again, not the 200
        assert (again.status, again.to_tag) == (500, refused.to_tag)
        assert server.core.location.bindings("alice") == []
        assert server.core.location.find_contact(f"sip:alice@127.0.0.1:{phone.port}") is None
    assert server.store.load() == []
    # The store works again: the phone's next REGISTER is stored and answered 200.
    data = phone.register(3, [("Authorization", authorization(offer, username="alice", password="alice-secret",
                                                                nc=2))])
    accepted = await phone.send(data)
    assert accepted.status == 200
    contact = f"sip:alice@127.0.0.1:{phone.port}"
    assert [b.contact for b in server.store.load()] == [contact]
    assert [b.contact for b in server.core.location.bindings("alice")] == [contact]


def run_server(tmp_path: Path, scenario: Callable[[Server, UdpPhone], Awaitable[None]]) -> None:
    """Start a server on a free port with CONFIG, play ``scenario`` against
    it with a phone, close it, and put the collector back as it was."""
    port = free_port(tcp=False)
    config = parse_config(CONFIG.format(port=port, data_dir=tmp_path), path=tmp_path / "proxy.toml")
    threshold = gc.get_threshold()  # the server tunes the collector for the whole process

    async def main() -> None:
        server = Server(config)
        await server.start()
        phone = UdpPhone(port)
        try:
            await scenario(server, phone)
        finally:
            phone.socket.close()
            await server.close()

    try:
        asyncio.run(main())
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_register_the_store_could_not_write_gets_500_then_200_once_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipfork")
    run_server(tmp_path, lambda server, phone: scenario(server, phone, monkeypatch))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # once, though the REGISTER came twice
    assert "alice" in errors[0] and "disk I/O error" in errors[0]

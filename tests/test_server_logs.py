"""The running server's log lines (sipfork.shell.server): informational
lines are written together within LOG_DELAY, a warning at once and after
the lines that came before it, and nothing waiting is lost at close.

The server runs in this process on asyncio, as in test_server_store; its
lines reach pytest's caplog through the "sipfork" logger.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from sipfork.shell import server as server_module
from sipfork.shell.server import Server
from tests.core.test_registrar import authorization
from tests.test_server_store import UdpPhone, run_server

REGISTERED = "REGISTER alice:"
BAD = "bad request from 127.0.0.1"


async def register(phone: UdpPhone) -> None:
    challenge = await phone.send(phone.register(1))
    offer = challenge.header_lines("WWW-Authenticate")[0]
    credentials = authorization(offer, username="alice", password="alice-secret")
    assert (await phone.send(phone.register(2, [("Authorization", credentials)]))).status == 200


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "sipfork"]


def test_an_informational_line_is_written_without_further_traffic(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipfork")

    async def scenario(server: Server, phone: UdpPhone) -> None:
        await register(phone)
        for _ in range(500):  # polled: written by the server's own timer, within LOG_DELAY
            if any(line.startswith(REGISTERED) for line in messages(caplog)):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"no REGISTER line in {messages(caplog)}")

    run_server(tmp_path, scenario)


def test_a_warning_is_written_at_once_after_the_lines_before_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="sipfork")
    monkeypatch.setattr(server_module, "LOG_DELAY", 3600.0)  # only the warning can write the line

    async def scenario(server: Server, phone: UdpPhone) -> None:
        await register(phone)
        assert not any(line.startswith(REGISTERED) for line in messages(caplog))
        bad = phone.register(3).replace(b"Max-Forwards: 70", b"Max-Forwards: seventy")
        assert (await phone.send(bad)).status == 400
        # Both written by the time the 400 left, in the order they came.
        lines = [line for line in messages(caplog) if line.startswith((REGISTERED, BAD))]
        assert [line.startswith(REGISTERED) for line in lines] == [True, False], lines

    run_server(tmp_path, scenario)


def test_lines_still_waiting_are_written_when_the_server_closes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="sipfork")
    monkeypatch.setattr(server_module, "LOG_DELAY", 3600.0)

    async def scenario(server: Server, phone: UdpPhone) -> None:
        await register(phone)
        assert not any(line.startswith(REGISTERED) for line in messages(caplog))

    run_server(tmp_path, scenario)
    assert any(line.startswith(REGISTERED) for line in messages(caplog))


def test_lines_of_a_level_turned_off_are_not_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sipfork")

    async def scenario(server: Server, phone: UdpPhone) -> None:
        await register(phone)
        assert server.logs == []

    run_server(tmp_path, scenario)
    assert not any(line.startswith(REGISTERED) for line in messages(caplog))

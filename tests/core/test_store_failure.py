"""The store did not take a REGISTER's bindings (the shell's write failed and
it called ``Core.store_failed``): the REGISTER is answered 500 instead of
200, its retransmissions too, and the location table holds what the store
has. Driven with bytes and a hand-stepped clock, as in test_proxy."""

from __future__ import annotations

import pytest

from sipfork.core.effects import DropBinding, Effect, SaveBinding, Send
from sipfork.core.proxy import Core
from sipfork.sip.message import Response
from tests.core.test_proxy import NOW, _authorized_register, binding, make_core, parsed


def register_and_fail(core: Core, port: int, now: float, *, expires: int = 3600) -> tuple[bytes, list[Effect]]:
    """bob registers from ``port`` (the challenge round first); the shell's
    write of what the 200 OK acknowledges fails. The REGISTER's bytes and
    what the core has the shell carry out instead."""
    data = _authorized_register(core, port, now, expires=expires)
    core.receive(data, ("127.0.0.1", port), "udp", now + 1)
    effects = core.effects()
    assert [type(e).__name__ for e in effects if isinstance(e, (SaveBinding, DropBinding, Send))] == [
        "SaveBinding" if expires else "DropBinding", "Send"]
    return data, core.store_failed(effects)


def answers(effects: list[Effect], port: int) -> list[Response]:
    return [parsed(e) for e in effects if isinstance(e, Send) and e.port == port]  # type: ignore[misc]


def test_a_new_registration_the_store_lost_is_answered_500_and_forgotten() -> None:
    core = make_core()
    data, out = register_and_fail(core, 6301, NOW)
    [answer] = answers(out, 6301)
    assert (answer.status, answer.reason) == (500, "Server Internal Error")
    assert answer.header("Retry-After") == "5"
    assert answer.call_id == "reg-6301" and answer.cseq.number == 2 and answer.to_tag
    assert answer.header("Contact") is None  # it lists no binding: none was kept
    assert core.location.bindings("bob") == []
    assert core.next_deadline() is not None and core.next_deadline() < NOW + 3600  # Timer J, no expiry
    core.receive(data, ("127.0.0.1", 6301), "udp", NOW + 2)  # the 500 was lost: the same 500 again
    assert core.effects() == [e for e in out if isinstance(e, Send) and e.port == 6301]
    assert core.location.bindings("bob") == []


@pytest.mark.parametrize("expires", [3600, 0], ids=["refresh", "unregister"])
def test_a_change_the_store_lost_leaves_the_stored_binding(expires: int) -> None:
    stored = binding("bob", 6301)
    core = make_core(stored)
    _, out = register_and_fail(core, 6301, NOW, expires=expires)
    assert [r.status for r in answers(out, 6301)] == [500]
    [kept] = core.location.bindings("bob")
    assert kept is stored
    assert core.location.contacts("bob", NOW + 2) == [stored]


def test_every_register_of_a_failed_write_gets_500_and_the_other_effects_stay() -> None:
    core = make_core()
    pending: list[Effect] = []  # what the shell holds for one group commit
    for port in (6301, 6302):
        core.receive(_authorized_register(core, port, NOW), ("127.0.0.1", port), "udp", NOW + 1)
        pending += core.effects()
    out = core.store_failed(pending)
    assert [(r.status, port) for port in (6301, 6302) for r in answers(out, port)] == [(500, 6301), (500, 6302)]
    assert core.location.bindings("bob") == []
    assert len(out) == len(pending)  # each 200 replaced in place, nothing else touched
    assert [e for e in out if not isinstance(e, Send)] == [e for e in pending if not isinstance(e, Send)]


def test_the_drop_of_an_expired_binding_is_not_taken_back() -> None:
    core = make_core(binding("bob", 6301))
    core.handle_timer(NOW + 3601)
    effects = core.effects()
    assert [type(e).__name__ for e in effects if not isinstance(e, Send)] == ["DropBinding", "Log"]
    assert core.store_failed(effects) == effects
    assert core.location.bindings("bob") == []  # expired either way


def test_a_retransmission_answered_before_the_failed_write_gets_500_too() -> None:
    """The REGISTER came again while the shell still held its 200 for the
    group commit: the kept 200 joined the held effects, and must not leave
    once the write failed."""
    core = make_core()
    data = _authorized_register(core, 6301, NOW)
    core.receive(data, ("127.0.0.1", 6301), "udp", NOW + 1)
    pending = core.effects()
    core.receive(data, ("127.0.0.1", 6301), "udp", NOW + 1.5)  # before the commit ran
    pending += core.effects()
    out = core.store_failed(pending)
    assert [r.status for r in answers(out, 6301)] == [500, 500]
    assert core.location.bindings("bob") == []

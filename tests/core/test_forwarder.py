"""The forwarder's deferred client transactions (``Forwarder.settle``)."""

from __future__ import annotations

import pytest

from sipfork.core import forwarder
from sipfork.core.effects import Send
from sipfork.core.transactions import TransactionError
from tests.core.test_proxy import (
    CALLER,
    NOW,
    binding,
    invite,
    make_core,
    reply,
    sends,
    to,
)


def test_a_branch_whose_transaction_cannot_be_made_does_not_stop_later_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug of ours that makes one branch's client transaction fail raises
    once (the shell logs it), not again at every later message."""
    real = forwarder.ClientTransaction

    def failing_for_call_1(data: bytes, **kwargs: object) -> forwarder.ClientTransaction:
        if b"call-1@test" in data:
            raise TransactionError("a bug of ours")
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(forwarder, "ClientTransaction", failing_for_call_1)
    core = make_core(binding("alice", 6001))
    core.receive(invite(), CALLER, "udp", NOW)
    assert len(to(6001, [e for e in core.effects(settle=False) if isinstance(e, Send)])) == 1  # the fork left
    with pytest.raises(TransactionError):
        core.settle()  # as the shell does once the forks are sent
    core.receive(invite(branch="z9hG4bKcaller2", call_id="call-2@test"), CALLER, "udp", NOW + 1)
    [fork] = to(6001, sends(core))
    assert fork.call_id == "call-2@test"
    assert core.next_deadline() is not None
    core.receive(reply(fork, 180), ("127.0.0.1", 6001), "udp", NOW + 2)  # type: ignore[arg-type]
    assert [r.status for r in to(CALLER[1], sends(core))] == [180]  # type: ignore[union-attr]

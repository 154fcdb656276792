"""Best response, Max-Breadth and Timer C in the proxy core (RFC 3261 §16.7,
§16.8, RFC 5393), driven with bytes and a hand-stepped clock."""

from __future__ import annotations

import random
from pathlib import Path

from sipfork.config import parse_config
from sipfork.core.ids import Ids
from sipfork.core.proxy import Core
from tests.core.test_proxy import (
    CALLER,
    CONFIG,
    NOW,
    binding,
    invite,
    make_core,
    parsed,
    reply,
    sends,
    start_call,
    to,
)


def test_a_6xx_cancels_the_other_branches_and_goes_upstream() -> None:
    core = make_core(binding("alice", 6001), binding("alice", 6002))
    forks = start_call(core)
    core.receive(reply(forks[6001], 180, to_tag="r"), ("127.0.0.1", 6001), "udp", NOW + 0.1)
    sends(core)
    core.receive(reply(forks[6002], 603, to_tag="d"), ("127.0.0.1", 6002), "udp", NOW + 0.5)
    out = sends(core)
    assert [m.method for m in to(6001, out)] == ["CANCEL"]  # type: ignore[union-attr]
    assert [r.status for r in to(CALLER[1], out)] == [603]  # type: ignore[union-attr]


def test_a_503_goes_upstream_as_500() -> None:
    core = make_core(binding("alice", 6001))
    forks = start_call(core)
    core.receive(reply(forks[6001], 503, to_tag="x"), ("127.0.0.1", 6001), "udp", NOW + 0.1)
    assert [r.status for r in to(CALLER[1], sends(core))] == [500]  # type: ignore[union-attr]


def test_challenges_of_several_branches_are_merged_into_one_407() -> None:
    core = make_core(binding("alice", 6001), binding("alice", 6002))
    forks = start_call(core)
    for port, realm in ((6001, "one"), (6002, "two")):
        challenge = reply(forks[port], 407, to_tag=realm).replace(
            b"Content-Length: 0", f'Proxy-Authenticate: Digest realm="{realm}", nonce="n"\r\nContent-Length: 0'.encode())
        core.receive(challenge, ("127.0.0.1", port), "udp", NOW + 0.1)
    upstream = to(CALLER[1], sends(core))
    assert [r.status for r in upstream] == [407]  # type: ignore[union-attr]
    realms = upstream[0].header_lines("Proxy-Authenticate")
    assert len(realms) == 2 and any("one" in r for r in realms) and any("two" in r for r in realms)


def test_max_breadth_is_split_between_parallel_branches_and_440_when_too_narrow() -> None:
    core = make_core(binding("alice", 6001), binding("alice", 6002))
    forks = start_call(core)
    assert {request.header("Max-Breadth") for request in forks.values()} == {"30"}  # 60 // 2
    core.receive(invite(branch="z9hG4bKnarrow", call_id="narrow", extra="Max-Breadth: 1\r\n"), CALLER, "udp", NOW)
    assert [r.status for r in to(CALLER[1], sends(core))] == [440]  # type: ignore[union-attr]


UNLIMITED = CONFIG + """
[[number]]
number = "+4922166966966"

[[number.forwarding]]
type = "always"
duration = "unlimited"
targets = ["alice"]
"""


def test_timer_c_restarts_on_each_provisional_and_gives_up_the_branch_after_three_minutes() -> None:
    core = Core(parse_config(UNLIMITED, path=Path("/tmp/sipfork-test/proxy.toml")), ids=Ids(random.Random(5).randbytes),
                bindings=[binding("alice", 6001)])
    core.receive(invite("+4922166966966"), CALLER, "udp", NOW)
    fork = to(6001, sends(core))[0]
    core.receive(reply(fork, 180, to_tag="r"), ("127.0.0.1", 6001), "udp", NOW + 0.1)
    core.receive(reply(fork, 183, to_tag="r"), ("127.0.0.1", 6001), "udp", NOW + 100)
    sends(core)
    core.handle_timer(NOW + 279.9)  # 180 s after the first 1xx: restarted by the 183
    assert [s for s in sends(core) if s.port == 6001] == []
    core.handle_timer(NOW + 280.0)
    out = sends(core)
    cancels = to(6001, out)
    assert [(m.method, m.header("Reason")) for m in cancels] == [("CANCEL", None)]  # type: ignore[union-attr]
    # Nothing else rings: the rule ended unanswered, the caller hears 480.
    assert [r.status for r in to(CALLER[1], out)] == [480]  # type: ignore[union-attr]


def test_a_trusted_caller_may_not_dial_out() -> None:
    core = make_core()
    core.receive(invite("+491701234567"), CALLER, "udp", NOW)
    assert [r.status for r in to(CALLER[1], sends(core))] == [403]  # type: ignore[union-attr]


def test_a_late_2xx_after_the_callers_cancel_still_reaches_the_caller() -> None:
    core = make_core(binding("alice", 6001))
    forks = start_call(core)
    core.receive(reply(forks[6001], 180, to_tag="r"), ("127.0.0.1", 6001), "udp", NOW + 0.1)
    sends(core)
    core.receive(invite(method="CANCEL"), CALLER, "udp", NOW + 1)
    sends(core)
    core.receive(reply(forks[6001], 200, to_tag="r"), ("127.0.0.1", 6001), "udp", NOW + 1.01)
    late = [parsed(s) for s in sends(core) if s.port == CALLER[1]]
    assert [(r.status, r.cseq.method) for r in late] == [(200, "INVITE")]  # type: ignore[union-attr]


def test_the_answer_goes_upstream_before_the_other_branches_are_cancelled() -> None:
    core = make_core(binding("alice", 6001), binding("alice", 6002))
    forks = start_call(core)
    core.receive(reply(forks[6001], 180, to_tag="r"), ("127.0.0.1", 6001), "udp", NOW + 0.1)
    sends(core)
    core.receive(reply(forks[6002], 200, to_tag="a"), ("127.0.0.1", 6002), "udp", NOW + 1)
    order = [(s.port, parsed(s)) for s in sends(core)]
    # The caller waits for the 200; the losing phone can wait for its CANCEL.
    assert [(port, getattr(m, "status", None) or m.method) for port, m in order] == [  # type: ignore[union-attr]
        (CALLER[1], 200), (6001, "CANCEL")]

"""`[proxy] workers = 2` with real phones: two processes on one port.

The kernel hands each datagram to one of the workers by a hash of its
source and destination (SO_REUSEPORT), so a phone's messages all reach the
same worker. The phones' ports are chosen by probing that hash beforehand
(as the benchmark harness does for its callers), so that alice's and bob's
land on different workers: alice registers at one, bob calls her through
the other.
"""

from __future__ import annotations

import re

from benchmarks.runner import reuseport_sockets
from tests.e2e.phones import Event, Phone, free_port
from tests.e2e.test_forwarding import LOOP_CONFIG, PhoneFactory, ProxyFactory

HOST = "127.0.0.1"


def ports_on_two_workers(proxy_port: int) -> tuple[int, int]:
    """Two free ports whose datagrams to ``proxy_port`` go to different
    sockets of a group of two (the workers bind theirs the same way)."""
    candidates = [free_port(HOST) for _ in range(16)]
    sockets = reuseport_sockets(HOST, proxy_port, [(HOST, port) for port in candidates], 2)
    by_socket = {socket: port for port, socket in zip(candidates, sockets, strict=True) if socket is not None}
    assert set(by_socket) == {0, 1}, f"16 ports all went to one socket: {sockets}"
    return by_socket[0], by_socket[1]


def answered_and_hung_up(caller: Phone, callee: Phone, uri: str) -> Event:
    """``caller`` calls ``uri``, ``callee`` answers, ``caller`` hangs up;
    the callee's incoming_call event."""
    call = caller.call(uri)
    incoming = callee.wait_for("incoming_call")
    callee.answer(incoming.call)
    assert caller.wait_for("call_state", call=call, state="CONFIRMED").status == 200
    caller.hangup(call)
    callee.wait_for("call_state", call=incoming.call, state="DISCONNECTED")
    assert caller.wait_for("call_state", call=call, state="DISCONNECTED")
    return incoming


def worker_of(line: str) -> str:
    match = re.search(r"sipfork\[(\d+)\]", line)
    assert match is not None, line
    return match.group(1)


def test_a_registration_at_one_worker_rings_for_a_call_through_the_other(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    port = free_port(HOST)
    alice_port, bob_port = ports_on_two_workers(port)
    proxy = proxy_factory({"proxy": {"workers": 2}}, port=port)
    # The supervisor wrote its pid in the fresh data_dir (it once failed to:
    # the workers had not made the directory yet).
    assert (proxy.data_dir / "sipfork.pid").read_text().strip() == str(proxy.pid)
    alice = phone_factory("alice", local_port=alice_port)
    bob = phone_factory("bob", local_port=bob_port)
    assert alice.register_at(proxy, "alice") == 200
    assert bob.register_at(proxy, "bob") == 200
    registered_at = worker_of(proxy.wait_for_log("REGISTER alice:"))
    assert worker_of(proxy.wait_for_log("REGISTER bob:")) != registered_at

    # At once: the INVITE goes to bob's worker, which never saw alice's
    # REGISTER. Alice's 180 and 200 reach the worker that forked the INVITE
    # (its own port is in the Via): otherwise bob would never hear them.
    answered_and_hung_up(bob, alice, "sip:alice@pbx.local")
    assert worker_of(proxy.wait_for_log("call bob → user alice")) != registered_at


def test_a_forwarding_to_ourselves_comes_back_to_the_worker_that_sent_it(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    # +…03 forwards to sip:alice@<the proxy>: the forked INVITE is a request
    # to ourselves (a spiral). Sent to the shared port, the kernel would hand
    # it to either worker by the hash of the sending worker's own port, and
    # the other one would not know it as ours and challenge it (407): this
    # failed in about half the runs before the worker kept it to itself.
    port = free_port(HOST)
    alice_port, dave_port = ports_on_two_workers(port)
    proxy = proxy_factory(LOOP_CONFIG.replace('domain = "pbx.local"', 'domain = "pbx.local"\nworkers = 2'),
                          port=port)
    alice = phone_factory("alice", local_port=alice_port)
    dave = phone_factory("dave", local_port=dave_port)
    assert alice.register_at(proxy, "alice") == 200
    assert dave.register_at(proxy, "dave") == 200
    assert answered_and_hung_up(dave, alice, "+4922100000003").from_user == "dave"
    # The worker that forked the call to +…03 took the spiral in itself.
    forked_by = worker_of(proxy.wait_for_log("call dave → number +4922100000003: answered"))
    assert worker_of(proxy.wait_for_log("call dave → user alice: answered")) == forked_by


def test_a_forwarding_to_ourselves_over_tcp_stays_with_the_worker_that_sent_it(
    proxy_factory: ProxyFactory, phone_factory: PhoneFactory
) -> None:
    # As above, with the target naming this proxy over TCP: the TCP port is
    # shared by the workers too (the connection went to the other worker in
    # 6 of 8 runs before, and the call ended 480). The worker takes a request
    # to one of our own addresses in itself, whatever the transport.
    port = free_port(HOST)
    alice_port, dave_port = ports_on_two_workers(port)
    config = LOOP_CONFIG.replace('domain = "pbx.local"', 'domain = "pbx.local"\nworkers = 2').replace(
        'targets = ["sip:alice@$host:$port"]', 'targets = ["sip:alice@$host:$port;transport=tcp"]')
    proxy = proxy_factory(config, port=port)
    alice = phone_factory("alice", local_port=alice_port)
    dave = phone_factory("dave", local_port=dave_port)
    assert alice.register_at(proxy, "alice") == 200
    assert dave.register_at(proxy, "dave") == 200
    for _ in range(4):  # through the shared socket, the other worker got it about every other time
        mark = proxy.log_mark()
        assert answered_and_hung_up(dave, alice, "+4922100000003").from_user == "dave"
        forked_by = worker_of(proxy.wait_for_log("call dave → number +4922100000003: answered", after=mark))
        assert worker_of(proxy.wait_for_log("call dave → user alice: answered", after=mark)) == forked_by

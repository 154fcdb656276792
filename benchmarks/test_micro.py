"""Micro-benchmarks of sipfork's pure layers (no sockets, no event loop).

Run by the harness (`python -m benchmarks run`, part "micro") with
pytest-benchmark; not part of the normal test suite (pytest's testpaths is
tests/). By hand:

    .venv/bin/python -m pytest benchmarks/test_micro.py -o addopts= --benchmark-columns=median,ops

The messages are the ones the load test sends: SIPp's INVITE as it reaches
the proxy, and the proxy forking it to the three registered contacts.
"""

from __future__ import annotations

import gc
import itertools
import random
import time

import pytest

pytest.importorskip("pytest_benchmark")

from sipfork.bindings import Binding  # noqa: E402
from sipfork.config import parse_config  # noqa: E402
from sipfork.core.effects import Send  # noqa: E402
from sipfork.core.ids import Ids  # noqa: E402
from sipfork.core.proxy import Core  # noqa: E402
from sipfork.sip.builder import build_response  # noqa: E402
from sipfork.sip.edits import forward_request  # noqa: E402
from sipfork.shell.server import keep_collections_small, settle_memory  # noqa: E402
from sipfork.sip.message import parse_message  # noqa: E402

from .layout import DOMAIN, USER  # noqa: E402
from .proxies import sipfork_config  # noqa: E402

NOW = 1_800_000_000.0
CONTACTS = [("127.0.0.2", 5082), ("127.0.0.3", 5083), ("127.0.0.4", 5084)]


def invite(n: int = 1) -> bytes:
    """SIPp's INVITE (benchmarks/scenarios/uac_invite.xml) for call n."""
    return (
        f"INVITE sip:{USER}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{n}-0\r\n"
        f'From: "bench caller" <sip:caller@127.0.0.1:5061>;tag=4242SIPpTag00{n}\r\n'
        f"To: <sip:{USER}@{DOMAIN}>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@127.0.0.1:5061>\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: sipfork benchmark\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def core_with_contacts(tmp_path) -> Core:
    config = parse_config(
        sipfork_config(port=5060, data_dir=tmp_path, trusted_host="127.0.0.1"),
        path=tmp_path / "proxy.toml",
    )
    bindings = [
        Binding(
            user=USER,
            contact=f"sip:{USER}@{host}:{port}",
            source_host=host,
            source_port=port,
            transport="udp",
            expires_at=NOW + 3600,
            call_id=f"reg-{i}",
            cseq=2,
            registered_at=NOW,
        )
        for i, (host, port) in enumerate(CONTACTS)
    ]
    return Core(config, ids=Ids(random.Random(7).randbytes), bindings=bindings)


def test_parse_invite(benchmark):
    """parse_message alone (headers indexed, bodies parsed lazily)."""
    data = invite()
    message = benchmark(parse_message, data)
    assert message.method == "INVITE"


def test_parse_invite_and_read_proxy_fields(benchmark):
    """parse_message and every header the proxy reads for an INVITE."""
    data = invite()

    def parse_and_read():
        m = parse_message(data)
        return (m.call_id, m.cseq, m.top_via, m.from_tag, m.to_tag, m.max_forwards, m.routes, m.ruri)

    fields = benchmark(parse_and_read)
    assert fields[0] == "1-4242@127.0.0.1"


def test_build_forked_branch(benchmark):
    """One branch's bytes by edits of the received INVITE: new Via, Request-URI,
    Max-Forwards, Record-Route (the request is parsed once, outside the loop)."""
    request = parse_message(invite())
    request.top_via  # noqa: B018 - parsed once, as the proxy has done by then
    via = "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK0123456789abcdef;rport"

    def build():
        return forward_request(
            request,
            via=via,
            request_uri=f"sip:{USER}@127.0.0.3:5083",
            max_forwards=69,
            received=None,
            rport=5061,
            record_route=("<sip:127.0.0.1:5060;lr>",),
        )

    data = benchmark(build)
    assert data.startswith(b"INVITE sip:bench@127.0.0.3:5083 SIP/2.0\r\n")


def test_core_invite_forks_to_three(benchmark, tmp_path):
    """The proxy core receiving one INVITE from the trusted gateway: 100 Trying
    and three forked INVITEs come out (no sockets; a fresh call each round)."""
    core = core_with_contacts(tmp_path)
    numbers = itertools.count(1)
    clock = itertools.count()

    def setup():
        return (invite(next(numbers)),), {}

    def handle(data):
        core.receive(data, ("127.0.0.1", 5061), "udp", NOW + next(clock) * 1e-4)
        effects = core.effects()
        core.next_deadline()  # as the shell does after sending: arming the timers is part of the work
        return effects

    effects = benchmark.pedantic(handle, setup=setup, rounds=3000, warmup_rounds=100)
    sends = [e for e in effects if isinstance(e, Send)]
    invites = [e for e in sends if e.data.startswith(b"INVITE ")]
    assert {(e.host, e.port) for e in invites} == set(CONTACTS), [e.data[:60] for e in sends]



# --- one whole benchmark call through the core -------------------------------

CALLER = ("127.0.0.1", 5061)
Inbound = tuple[bytes, tuple[str, int], float]


def _as_contact(request: bytes, status: int, tag: str) -> bytes:
    """A contact's answer to a request the proxy sent it (SIPp's scenarios
    copy Record-Route into it)."""
    message = parse_message(request)
    headers = [("Record-Route", value) for value in message.header_values("record-route")]
    return build_response(message, status, to_tag=tag, headers=(*headers, ("Contact", f"<sip:{USER}@127.0.0.2:5082>")))


def _feed(core: Core, data: bytes, source: tuple[str, int], at: float) -> list[Send]:
    """One message in, as the shell handles it: effects out, timers armed,
    and those already due handled."""
    core.receive(data, source, "udp", at)
    sends = [e for e in core.effects() if isinstance(e, Send)]
    deadline = core.next_deadline()
    if deadline is not None and deadline <= at:
        core.handle_timer(at)
        core.effects()
    return sends


def _record_call(core: Core, n: int, now: float) -> list[Inbound]:
    """Play SIPp's caller and contacts for call n (the load test's flow:
    INVITE, three 180s, 200 from the first contact, CANCEL to the others
    answered 200 and 487, ACK, BYE 100 ms later, 200); returns what reached
    the proxy, in order."""
    inbound: list[Inbound] = []

    def send(data: bytes, source: tuple[str, int], at: float) -> list[Send]:
        inbound.append((data, source, at))
        return _feed(core, data, source, at)

    forks = {(e.host, e.port): e.data for e in send(invite(n), CALLER, now) if e.data.startswith(b"INVITE")}
    for i, contact in enumerate(CONTACTS):
        send(_as_contact(forks[contact], 180, f"c{i}"), contact, now + 0.001)
    out = send(_as_contact(forks[CONTACTS[0]], 200, "c0"), CONTACTS[0], now + 0.05)
    cancels = {(e.host, e.port): e.data for e in out if e.data.startswith(b"CANCEL")}
    answer = parse_message(next(e.data for e in out if e.data.startswith(b"SIP/2.0 200")))
    for i, contact in enumerate(CONTACTS[1:], 1):
        send(_as_contact(cancels[contact], 200, f"c{i}"), contact, now + 0.051)
        send(_as_contact(forks[contact], 487, f"c{i}"), contact, now + 0.052)
    routes = "".join(f"Route: {value}\r\n" for value in reversed(answer.header_values("record-route")))
    ack = (
        f"ACK sip:{USER}@127.0.0.2:5082 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-ack-{n}\r\n"
        f"From: {answer.header('from')}\r\nTo: {answer.header('to')}\r\nCall-ID: {answer.call_id}\r\n"
        f"CSeq: 1 ACK\r\n{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    send(ack, CALLER, now + 0.053)
    bye = ack.replace(b"ACK sip", b"BYE sip").replace(b"1 ACK", b"2 BYE").replace(b"-ack-", b"-bye-")
    forwarded = next(e.data for e in send(bye, CALLER, now + 0.15) if e.data.startswith(b"BYE"))
    send(_as_contact(forwarded, 200, "c0"), CONTACTS[0], now + 0.151)
    return inbound


def test_core_whole_call(benchmark, tmp_path):
    """The proxy core carrying one whole benchmark call: the 12 messages that
    reach the proxy (INVITE, three 180s, 200, two 200s to CANCEL, two 487s,
    ACK, BYE, its 200), each followed by what the shell does after a
    message. The calls are recorded once against a core with seeded
    identifiers, then replayed into a fresh core with the same seed (so the
    proxy's branches match the recorded answers): only the core is timed."""
    calls = 2000
    recorder = core_with_contacts(tmp_path / "record")
    recorded = [_record_call(recorder, n, NOW + n * 0.01) for n in range(1, calls + 1)]
    core = core_with_contacts(tmp_path / "replay")
    rounds = iter(recorded)

    def setup():
        return (next(rounds),), {}

    def replay(call: list[Inbound]) -> int:
        sent = 0
        for data, source, at in call:
            sent += len(_feed(core, data, source, at))
        return sent

    sent = benchmark.pedantic(replay, setup=setup, rounds=calls - 100, warmup_rounds=100)
    # The last call: 3 forks + 100 + 3 180s + 200 + 2 CANCELs + 2 ACKs + ACK + BYE + 200.
    assert sent == 15


def test_core_invite_after_idle(benchmark, tmp_path):
    """test_core_invite_forks_to_three as the latency part meets it: each
    INVITE comes 50 ms after the core last had anything to do (calls at 10
    calls/s), and is timed to its three branches (what the shell sends
    before the core settles the rest). On the machines of this project,
    50 ms of idleness leave the caches cold: the same work takes several
    times its hot median, and that cold time, not the hot one, is what the
    fork latency at low load measures (benchmarks/README.md, "Where the
    time goes at low load"). Each round finishes the previous call (its
    other eleven messages, untimed) before it idles."""
    calls, idle = 160, 0.05
    recorder = core_with_contacts(tmp_path / "record")
    recorded = [_record_call(recorder, n, NOW + n / 10) for n in range(1, calls + 1)]
    core = core_with_contacts(tmp_path / "replay")
    rounds = iter(recorded)
    rest: list[Inbound] = []

    def setup():
        if rest:
            core.settle()
            core.effects()
            core.next_deadline()
            for data, source, at in rest:
                _feed(core, data, source, at)
        call = next(rounds)
        rest[:] = call[1:]
        time.sleep(idle)  # the idleness measured, not a wait for anything
        return (call[0],), {}

    def invite(inbound: Inbound) -> list:
        data, source, at = inbound
        core.receive(data, source, "udp", at)
        return core.effects(settle=False)

    effects = benchmark.pedantic(invite, setup=setup, rounds=calls - 10, warmup_rounds=10)
    assert {(e.host, e.port) for e in effects if e.data.startswith(b"INVITE ")} == set(CONTACTS)


def test_core_a_second_of_calls(benchmark, tmp_path):
    """One second of the load test at 100 calls/s through the core, in the
    steady state: after 40 s of calls, so that the transactions of earlier
    calls linger and expire as in the running proxy (Timer D, L and M after
    32 s, K after 5 s), which the per-call median of test_core_whole_call
    leaves out (one call in a hundred meets the second's timer pass). A
    round is 100 calls: its time in ms is the core's µs per call ÷ 10, and
    the share of a core the core needs at 100 calls/s. The collector is
    tuned as the shell tunes it."""
    rate, warm_s, timed_s = 100, 40, 15
    recorder = core_with_contacts(tmp_path / "record")
    recorded = [_record_call(recorder, n, NOW + n / rate) for n in range(1, (warm_s + timed_s) * rate + 1)]
    core = core_with_contacts(tmp_path / "replay")
    seconds = iter([recorded[s * rate : (s + 1) * rate] for s in range(warm_s + timed_s)])

    def setup():
        return (next(seconds),), {}

    def replay(calls: list[list[Inbound]]) -> int:
        sent = 0
        for call in calls:
            for data, source, at in call:
                sent += len(_feed(core, data, source, at))
            keep_collections_small()
        return sent

    thresholds = gc.get_threshold()
    settle_memory()
    try:
        sent = benchmark.pedantic(replay, setup=setup, rounds=timed_s, warmup_rounds=warm_s)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    assert sent == 15 * rate  # every call of the last second carried whole (see test_core_whole_call)

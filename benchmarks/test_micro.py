"""Micro-benchmarks of sipfork's pure layers (no sockets, no event loop).

Run by the harness (`python -m benchmarks run`, part "micro") with
pytest-benchmark; not part of the normal test suite (pytest's testpaths is
tests/). By hand:

    .venv/bin/python -m pytest benchmarks/test_micro.py -o addopts= --benchmark-columns=median,ops

The messages are the ones the load test sends: SIPp's INVITE as it reaches
the proxy, and the proxy forking it to the three registered contacts.
"""

from __future__ import annotations

import itertools
import random

import pytest

pytest.importorskip("pytest_benchmark")

from sipfork.bindings import Binding  # noqa: E402
from sipfork.config import parse_config  # noqa: E402
from sipfork.core.effects import Send  # noqa: E402
from sipfork.core.ids import Ids  # noqa: E402
from sipfork.core.proxy import Core  # noqa: E402
from sipfork.sip.edits import forward_request  # noqa: E402
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


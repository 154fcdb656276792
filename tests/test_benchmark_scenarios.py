"""The benchmark's SIPp scenarios against a proxy played by the test.

The ringing contact (uas_ring.xml) must take what a proxy may send it
without failing the call: here, the CANCEL once more after the call ended,
as a proxy retransmits a CANCEL until a 200 reaches it (RFC 3261
§17.1.2.2). Kamailio did once in a few thousand calls, and SIPp's
"unexpected CANCEL" then failed a whole throughput step.

SIPp comes from Debian's sip-tester, which `make test` installs.
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the harness lives in benchmarks/ beside the package
    sys.path.insert(0, str(ROOT))

from benchmarks import sipp  # noqa: E402
from benchmarks.layout import Endpoint  # noqa: E402

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="SIPp not installed (make test installs sip-tester)"),
]

# An address of its own on loopback, apart from the benchmark's 127.0.0.1-9.
CONTACT = Endpoint("127.0.0.77", 5090, 16500, 18990)
CALL_ID = "scenario-test-1@127.0.0.1"


def _request(method: str, proxy: tuple[str, int], *, cseq_method: str | None = None, to_tag: str = "") -> bytes:
    host, port = proxy
    to = f"<sip:bench@{CONTACT.host}:{CONTACT.port}>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:bench@{CONTACT.host}:{CONTACT.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-scenario-1;rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:caller@{host}>;tag=caller-1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {CALL_ID}\r\n"
        f"CSeq: 1 {cseq_method or method}\r\n"
        f"Contact: <sip:caller@{host}:{port}>\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def _receive(sock: socket.socket) -> tuple[int, str, str]:
    """The next response: (status, CSeq method, To tag)."""
    data = sock.recv(65535).decode()
    lines = data.split("\r\n")
    status = int(lines[0].split()[1])
    cseq = next(line for line in lines if line.lower().startswith("cseq:")).split()[-1]
    to = next(line for line in lines if line.lower().startswith("to:"))
    return status, cseq, to.partition(";tag=")[2]


@pytest.mark.parametrize("cancel_again", [False, True], ids=["one CANCEL", "the CANCEL again after the ACK"])
def test_the_ringing_contact_ends_the_call_as_successful(tmp_path, cancel_again):
    contact = sipp.SippProcess("ring", sipp.contact_args(CONTACT, answers=False, calls=1), tmp_path, timeout_s=30)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as proxy:
            proxy.bind(("127.0.0.1", 0))
            address = proxy.getsockname()
            # SIPp binds its socket a moment after it starts: the INVITE is
            # retransmitted (T1, as a proxy would) until the 180 says it arrived.
            proxy.settimeout(0.5)
            for _ in range(20):
                proxy.sendto(_request("INVITE", address), CONTACT.address)
                try:
                    ringing = _receive(proxy)
                    break
                except TimeoutError:
                    continue
            else:
                pytest.fail(f"no 180 from SIPp: {contact.stderr_text()}")
            assert ringing[:2] == (180, "INVITE")
            proxy.settimeout(5)
            proxy.sendto(_request("CANCEL", address), CONTACT.address)
            answers = {_receive(proxy)[:2] for _ in range(2)}
            assert answers == {(200, "CANCEL"), (487, "INVITE")}
            proxy.sendto(_request("ACK", address, to_tag=ringing[2]), CONTACT.address)
            if cancel_again:
                proxy.sendto(_request("CANCEL", address), CONTACT.address)
                assert _receive(proxy)[:2] == (200, "CANCEL")
        assert contact.wait(10), "SIPp did not end the call"
        stats = contact.stats()
        assert (stats.successful, stats.failed) == (1, 0), contact.errors()
        assert contact.returncode == 0
        # Nothing in SIPp's error log: the harness shows its first lines
        # under "Failures seen" in RESULTS.md.
        assert contact.errors()[0] == 0, contact.errors()
    finally:
        contact.stop()

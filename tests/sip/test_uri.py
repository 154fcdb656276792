"""URI, name-addr, Via and CSeq grammar (RFC 3261 §19.1, §20, §25; RFC 3966; RFC 3581)."""

from __future__ import annotations

import pytest

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.headers import CSeq, Via, parse_cseq, parse_via, set_via_received
from sipfork.sip.status import REASONS, reason_for
from sipfork.sip.uri import NameAddr, SipUri, TelUri, parse_name_addr, parse_uri

URIS = [
    ("sip:alice@atlanta.com", SipUri(user="alice", host="atlanta.com")),
    ("SIP:alice:secretword@atlanta.com;transport=tcp",
     SipUri(user="alice", password="secretword", host="atlanta.com", params=(("transport", "tcp"),))),
    ("sips:alice@atlanta.com?subject=project%20x&priority=urgent",
     SipUri(scheme="sips", user="alice", host="atlanta.com", headers=(("subject", "project x"), ("priority", "urgent")))),
    ("sip:+1-212-555-1212:1234@gateway.com;user=phone",
     SipUri(user="+1-212-555-1212", password="1234", host="gateway.com", params=(("user", "phone"),))),
    ("sips:1212@gateway.com", SipUri(scheme="sips", user="1212", host="gateway.com")),
    ("sip:alice@192.0.2.4", SipUri(user="alice", host="192.0.2.4")),
    ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
     SipUri(host="atlanta.com", params=(("method", "REGISTER"),), headers=(("to", "alice@atlanta.com"),))),
    ("sip:alice;day=tuesday@atlanta.com", SipUri(user="alice;day=tuesday", host="atlanta.com")),
    ("sip:[2001:db8::10]:5070;lr;maddr=[::1]",
     SipUri(host="2001:db8::10", port=5070, params=(("lr", None), ("maddr", "[::1]")))),
    ("sip:%61lice@h", SipUri(user="alice", host="h")),
    ("tel:+1-201-555-0123", TelUri(number="+1-201-555-0123")),
    ("tel:7042;phone-context=example.com", TelUri(number="7042", params=(("phone-context", "example.com"),))),
]


@pytest.mark.parametrize(("text", "expected"), URIS, ids=[u[0] for u in URIS])
def test_parse_uri(text: str, expected: SipUri | TelUri) -> None:
    uri = parse_uri(text)
    assert uri == expected
    assert parse_uri(str(uri)) == uri


def test_uri_accessors() -> None:
    uri = parse_uri("sip:a@h;Transport=TLS;lr")
    assert isinstance(uri, SipUri)
    assert uri.transport == "tls" and uri.has_param("lr") and uri.param("lr") is None
    assert uri.param("TRANSPORT") == "TLS"
    assert str(SipUri(host="::1", port=5060)) == "sip:[::1]:5060"
    assert str(SipUri(user="a b:c", host="h")) == "sip:a%20b%3Ac@h"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("http://example.com", 416),
        ("urn:service:sos", 416),
        ("sip:", 400),
        ("sip:a@", 400),
        ("sip:a@h:port", 400),
        ("sip:a@h:70000", 400),
        ("sip:a@[::1", 400),
        ("sip:a@h h", 400),
        ("tel:", 400),
        ("tel:abc xyz", 400),
        ("nocolon", 400),
        ("1sip:x", 400),
    ],
)
def test_bad_uris(text: str, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status == status


NAME_ADDRS = [
    ('"Bob" <sips:bob@biloxi.com> ;tag=a48s',
     NameAddr(display="Bob", uri=SipUri(scheme="sips", user="bob", host="biloxi.com"), params=(("tag", "a48s"),))),
    ("sip:+12125551212@phone2net.com;tag=887s",
     NameAddr(uri=SipUri(user="+12125551212", host="phone2net.com"), params=(("tag", "887s"),))),
    ("Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
     NameAddr(display="Anonymous", uri=SipUri(user="c8oqz84zk7z", host="privacy.org"), params=(("tag", "hyh8"),))),
    ('Mr.  Watson <sip:watson@bell-telephone.com> ;q=0.7; expires=3600',
     NameAddr(display="Mr. Watson", uri=SipUri(user="watson", host="bell-telephone.com"),
              params=(("q", "0.7"), ("expires", "3600")))),
    ('<sip:a@h;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
     NameAddr(uri=SipUri(user="a", host="h", params=(("transport", "tcp"),)),
              params=(("+sip.instance", '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'),))),
    ('"" <tel:+49>', NameAddr(display="", uri=TelUri(number="+49"))),
    ('"\\"quoted\\" \\\\ <x>" <sip:h>', NameAddr(display='"quoted" \\ <x>', uri=SipUri(host="h"))),
]


@pytest.mark.parametrize(("text", "expected"), NAME_ADDRS, ids=[n[0] for n in NAME_ADDRS])
def test_parse_name_addr(text: str, expected: NameAddr) -> None:
    value = parse_name_addr(text)
    assert value == expected
    assert parse_name_addr(str(value)) == value
    assert value.tag == expected.param("tag")


@pytest.mark.parametrize(
    "text",
    ["", "<sip:a@h", '"unterminated <sip:a@h>', '"x" sip:a@h', "<sip:a@h> junk", "<sip:a@h>;=x", "<sip:a@h>;a=b c",
     "a\"b <sip:h>"],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_name_addr(text)


def test_via() -> None:
    via = parse_via("SIP / 2.0 / udp  [2001:db8::1] : 5060 ;branch=z9hG4bK1; received=10.0.0.1 ;rport=9")
    assert via == Via(transport="UDP", host="2001:db8::1", port=5060,
                      params=(("branch", "z9hG4bK1"), ("received", "10.0.0.1"), ("rport", "9")))
    assert via.response_address() == ("10.0.0.1", 9)
    assert parse_via(str(via)) == via
    assert Via(host="h").response_address() == ("h", 5060)
    assert parse_via("SIP/2.0/TCP h:5070;rport").response_address() == ("h", 5070)
    assert parse_via("SIP/2.0/UDP h;received=[::1];rport=7").response_address() == ("::1", 7)


@pytest.mark.parametrize(
    ("before", "received", "rport", "after"),
    [
        ("SIP/2.0/UDP h;branch=b;rport", "1.2.3.4", 5, "SIP/2.0/UDP h;branch=b;rport=5;received=1.2.3.4"),
        ("SIP/2.0/UDP h;received=x;branch=b", "1.2.3.4", None, "SIP/2.0/UDP h;received=1.2.3.4;branch=b"),
        ("SIP/2.0/UDP h", None, 7, "SIP/2.0/UDP h;rport=7"),
        ("SIP/2.0/UDP h;branch=b ", None, None, "SIP/2.0/UDP h;branch=b "),
    ],
)
def test_set_via_received(before: str, received: str | None, rport: int | None, after: str) -> None:
    assert set_via_received(before, received=received, rport=rport) == after


def test_cseq() -> None:
    assert parse_cseq(" 4711   INVITE ") == CSeq(number=4711, method="INVITE")
    for bad in ["", "1", "INVITE 1", "1 2 3", "-1 INVITE", "99999999999 INVITE", "1 IN@VITE"]:
        with pytest.raises(RemoteProtocolError):
            parse_cseq(bad)


def test_reasons() -> None:
    for code in [100, 180, 183, 200, 202, 302, 400, 401, 403, 404, 407, 408, 413, 416, 420, 423, 440, 480, 481, 482,
                 483, 486, 487, 491, 494, 500, 503, 505, 513, 600, 603, 604, 606, 607, 608, 199, 204, 412, 417, 421,
                 422, 428, 429, 430, 433, 436, 437, 438, 439, 469, 470, 493, 580]:
        assert code in REASONS
    assert reason_for(499) == "Request Failure"

"""Wire tests for parse_message: real messages in, parsed fields out (RFC 3261 §7, §20)."""

from __future__ import annotations

import pytest

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.headers import CSeq, Via, parse_contacts
from sipfork.sip.message import MAX_MESSAGE_SIZE, InvalidRequest, Request, Response, parse_message
from sipfork.sip.uri import NameAddr, SipUri, TelUri


def wire(*lines: str, body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


INVITE = wire(
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    'To: Bob <sip:bob@biloxi.example.com>',
    'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774',
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
    "Content-Length: 4",
    body="v=0\n",
)


def test_rfc3261_invite() -> None:
    m = parse_message(INVITE)
    assert isinstance(m, Request)
    assert m.method == "INVITE"
    assert m.uri == "sip:bob@biloxi.example.com"
    assert m.ruri == SipUri(user="bob", host="biloxi.example.com")
    assert m.top_via == Via(transport="UDP", host="pc33.atlanta.example.com", params=(("branch", "z9hG4bK776asdhds"),))
    assert m.top_via.branch == "z9hG4bK776asdhds"
    assert m.max_forwards == 70
    assert m.to.display == "Bob" and m.to_tag is None
    assert m.from_tag == "1928301774"
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert m.cseq == CSeq(number=314159, method="INVITE")
    assert m.contacts == [NameAddr(uri=SipUri(user="alice", host="pc33.atlanta.example.com"))]
    assert m.body == b"v=0\n"
    assert m.header("content-type") == "application/sdp"
    assert m.header("C") == "application/sdp"


def test_compact_forms_and_multi_value_lines() -> None:
    m = parse_message(
        wire(
            "REGISTER sips:ss2.biloxi.example.com SIP/2.0",
            "v: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashd92, SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK2;received=2001:db8::9;rport=5071",
            "V: SIP/2.0/TCP third;branch=z9hG4bK3;rport",
            "f: Bob <sips:bob@biloxi.example.com>;tag=ja743ks76zlflH",
            "t: Bob <sips:bob@biloxi.example.com>",
            "i: 1j9FpLxk3uxtm8tn@biloxi.example.com",
            "CSeq: 2 REGISTER",
            "m: <sips:bob@client.biloxi.example.com>;expires=3600;q=0.7, \"A, b\" <sip:b@[::1]:5062;transport=tcp>",
            "m: sip:c@x.example.com;expires=0",
            "k: path, outbound",
            "l: 0",
        )
    )
    assert isinstance(m, Request)
    vias = m.vias
    assert [v.transport for v in vias] == ["TLS", "UDP", "TCP"]
    assert vias[1].host == "2001:db8::9" and vias[1].port == 5070
    assert vias[1].received == "2001:db8::9" and vias[1].rport == 5071 and vias[1].has_rport
    assert vias[2].has_rport and vias[2].rport is None
    assert vias[0].has_rport is False
    assert m.header_values("supported") == ["path", "outbound"]
    assert m.header_lines("Via")[1] == "SIP/2.0/TCP third;branch=z9hG4bK3;rport"
    contacts = parse_contacts(m)
    assert contacts != "*"
    assert [c.param("expires") for c in contacts] == ["3600", None, "0"]
    assert contacts[1].display == "A, b"
    assert contacts[1].uri == SipUri(user="b", host="::1", port=5062, params=(("transport", "tcp"),))
    assert isinstance(contacts[1].uri, SipUri) and contacts[1].uri.transport == "tcp"
    assert contacts[2].uri == SipUri(user="c", host="x.example.com")  # addr-spec: params are the header's
    assert m.ruri == SipUri(scheme="sips", host="ss2.biloxi.example.com")


def test_folded_lines_and_lf_only() -> None:
    m = parse_message(
        b"OPTIONS tel:+1-201-555-0123;phone-context=+1 SIP/2.0\n"
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,\n"
        b"\t SIP/2.0/UDP b.example.com;branch=z9hG4bK2\n"
        b"From:\n <sip:a@example.com>;tag=x\n"
        b"To: <sip:b@example.com>\n"
        b"Call-ID: 1\n"
        b"CSeq: 9 OPTIONS\n"
        b"Subject: I know you're there,\n"
        b"        pick up the phone\n"
        b"        and talk to me!\n"
        b"\n"
    )
    assert isinstance(m, Request)
    assert m.ruri == TelUri(number="+1-201-555-0123", params=(("phone-context", "+1"),))
    assert [v.host for v in m.vias] == ["a.example.com", "b.example.com"]
    assert m.from_tag == "x"
    assert m.header("subject") == "I know you're there, pick up the phone and talk to me!"
    assert m.body == b""


def test_escapes_in_uris() -> None:
    m = parse_message(
        wire(
            "INVITE sip:%61lice;x%3By=1@example.com;transport=TCP;lr?Subject=hi%20there SIP/2.0",
            "Via: SIP/2.0/TCP h;branch=z9hG4bK1",
            "From: <sip:a@h>;tag=1",
            "To: \"B\\\\o\\\"b\" <sip:b@h>",
            "Call-ID: x",
            "CSeq: 1 INVITE",
        )
    )
    assert isinstance(m, Request)
    uri = m.ruri
    assert isinstance(uri, SipUri)
    assert uri.user == "alice;x;y=1"
    assert uri.transport == "tcp" and uri.has_param("LR")
    assert uri.headers == (("Subject", "hi there"),)
    assert m.to.display == 'B\\o"b'


def test_response() -> None:
    m = parse_message(
        wire(
            "SIP/2.0 180 Ringing",
            "Via: SIP/2.0/UDP proxy;branch=z9hG4bKp, SIP/2.0/UDP client;branch=z9hG4bKc;received=1.2.3.4",
            "From: <sip:a@h>;tag=1",
            "To: <sip:b@h>;tag=2",
            "Call-ID: x",
            "CSeq: 1 INVITE",
            "Content-Length: 0",
        )
    )
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (180, "Ringing")
    assert m.to_tag == "2"
    assert len(m.vias) == 2


def test_udp_body_without_content_length_and_extra_bytes() -> None:
    base = [
        "MESSAGE sip:b@h SIP/2.0",
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "From: <sip:a@h>;tag=1",
        "To: <sip:b@h>",
        "Call-ID: x",
        "CSeq: 1 MESSAGE",
    ]
    assert parse_message(wire(*base, body="hello")).body == b"hello"
    m = parse_message(wire(*base, "Content-Length: 2", body="hello"))
    assert m.body == b"he" and m.body_end == len(wire(*base, "Content-Length: 2")) + 2


GOOD = [
    "INVITE sip:b@h SIP/2.0",
    "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
    "From: <sip:a@h>;tag=1",
    "To: <sip:b@h>",
    "Call-ID: x",
    "CSeq: 1 INVITE",
    "Max-Forwards: 70",
]


def replace(index: int, line: str | None) -> list[str]:
    lines = list(GOOD)
    if line is None:
        del lines[index]
    else:
        lines[index] = line
    return lines


ERRORS = [
    # (what, lines, body, status)
    ("no Via", replace(1, None), "", 400),
    ("no From", replace(2, None), "", 400),
    ("no To", replace(3, None), "", 400),
    ("no Call-ID", replace(4, None), "", 400),
    ("no CSeq", replace(5, None), "", 400),
    ("bad CSeq number", replace(5, "CSeq: x INVITE"), "", 400),
    ("CSeq too big", replace(5, "CSeq: 2147483648 INVITE"), "", 400),
    ("CSeq method differs", replace(5, "CSeq: 1 BYE"), "", 400),
    ("CSeq without method", replace(5, "CSeq: 1"), "", 400),
    ("Max-Forwards not a number", replace(6, "Max-Forwards: seventy"), "", 400),
    ("Content-Length beyond body", GOOD + ["Content-Length: 10"], "abc", 400),
    ("Content-Length not a number", GOOD + ["Content-Length: -1"], "", 400),
    ("two Content-Length", GOOD + ["Content-Length: 0", "l: 0"], "", 400),
    ("two Call-ID", GOOD + ["i: y"], "", 400),
    ("empty Call-ID", replace(4, "Call-ID: "), "", 400),
    ("version", replace(0, "INVITE sip:b@h SIP/3.0"), "", 505),
    ("not a version", replace(0, "INVITE sip:b@h HTTP/1.1"), "", 400),
    ("scheme", replace(0, "INVITE http://example.com/ SIP/2.0"), "", 416),
    ("scheme mailto", replace(0, "INVITE mailto:a@b SIP/2.0"), "", 416),
    ("no scheme", replace(0, "INVITE bob SIP/2.0"), "", 400),
    ("bad method", replace(0, "INV@TE sip:b@h SIP/2.0"), "", 400),
    ("short start line", replace(0, "INVITE"), "", 400),
    ("extra words", replace(0, "INVITE sip:b@h SIP/2.0 extra"), "", 400),
    ("header without colon", GOOD + ["Garbage"], "", 400),
    ("bad header name", GOOD + ["Bad Name: x"], "", 400),
    ("leading continuation", [GOOD[0], " folded"] + GOOD[1:], "", 400),
]


@pytest.mark.parametrize(("what", "lines", "body", "status"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(what: str, lines: list[str], body: str, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(wire(*lines, body=body))
    assert info.value.status == status


def test_request_errors_carry_the_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_message(wire(*replace(0, "INVITE sip:b@h SIP/2.1")))
    assert info.value.status == 505
    assert info.value.request.call_id == "x"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (b"INVITE sip:b@h SIP/2.0\r\nVia: x", 400),  # no blank line
        (b"SIP/2.0 99 Too small\r\n\r\n", 400),
        (b"SIP/2.0 700 Too big\r\n\r\n", 400),
        (b"SIP/3.0 200 OK\r\n\r\n", 505),
        (b"SIP/2.0 200 OK\r\n\r\n", 400),  # no mandatory headers
        (b"\xff\xfe\x00garbage\r\n\r\n", 400),
        (b"X" * (MAX_MESSAGE_SIZE + 1), 413),
    ],
)
def test_raw_errors(data: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("line", "attribute"),
    [
        ("Via: SIP/2.0/UDP", "vias"),
        ("Via: SIP/1.0/UDP h", "vias"),
        ("Via: SIP/2.0/UDP h:99999", "vias"),
        ("Via: SIP/2.0/UDP [::1", "vias"),
        ("Via: SIP/2.0/UDP h;rport=x", "vias"),
        ("Via: SIP/2.0/UDP h;branch=", "top_via"),
        ("Via: SIP/2.0/UDP h h", "top_via"),
    ],
)
def test_lazy_errors(line: str, attribute: str) -> None:
    m = parse_message(wire(*replace(1, line)))
    with pytest.raises(RemoteProtocolError) as info:
        getattr(m, attribute)
    assert info.value.status == 400


def test_contact_star() -> None:
    m = parse_message(wire("REGISTER sip:h SIP/2.0", *GOOD[1:5], "CSeq: 1 REGISTER", "Contact: *", "Expires: 0"))
    assert parse_contacts(m) == "*"
    m2 = parse_message(wire("REGISTER sip:h SIP/2.0", *GOOD[1:5], "CSeq: 1 REGISTER", "Contact: *, <sip:a@h>"))
    with pytest.raises(RemoteProtocolError):
        parse_contacts(m2)


def test_size_limit_and_leading_crlf() -> None:
    lines = [*GOOD, "X-Pad: "]
    base = wire(*lines)
    pad = MAX_MESSAGE_SIZE - len(base)
    largest = wire(*lines[:-1], "X-Pad: " + "p" * pad)
    assert len(largest) == MAX_MESSAGE_SIZE
    assert parse_message(largest).header("x-pad") == "p" * pad
    m = parse_message(b"\r\n\r\n" + wire(*GOOD))
    assert isinstance(m, Request) and m.uri == "sip:b@h"


def test_header_lookup_forms() -> None:
    m = parse_message(wire(*GOOD, "Supported: a", "k: b", "SUPPORTED: c, d"))
    assert m.header("x-none") is None and m.header_lines("x-none") == [] and m.header_values("x-none") == []
    assert m.has_header("K") and m.has_header("supported") and not m.has_header("require")
    assert m.header("k") == "a"
    assert m.header_lines("Supported") == ["a", "b", "c, d"]
    assert m.header_values("SUPPORTED") == ["a", "b", "c", "d"]
    m2 = parse_message(wire(*GOOD, 'Authorization: Digest username="a", realm="b"', "Date: Sat, 13 Nov 2010 23:29:00 GMT"))
    assert m2.header_values("authorization") == ['Digest username="a", realm="b"']
    assert m2.header_values("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_stray_cr_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_message(wire(*GOOD, "X-Bad: a\rb"))

"""Forwarding by edits (RFC 3261 §16.6/§16.7, RFC 3581) and built messages (§8.2.6, §9.1, §17.1.1.3)."""

from __future__ import annotations

import pytest

from sipfork.sip.builder import build_ack, build_cancel, build_request, build_response
from sipfork.sip.edits import forward_request, forward_response
from sipfork.sip.errors import LocalProtocolError
from sipfork.sip.message import Request, Response, parse_message
from sipfork.sip.uri import SipUri

INVITE = (
    b"INVITE sip:bob@pbx.local SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport , SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKb\r\n"
    b"Via: SIP/2.0/UDP far;branch=z9hG4bKc\r\n"
    b"Route: <sip:pbx.local;lr>, <sip:next.example.com;lr>\r\n"
    b"Route: <sip:last.example.com;lr>\r\n"
    b"Record-Route: <sip:earlier.example.com;lr>\r\n"
    b"f: \"Alice\" <sip:alice@pbx.local>;tag=1\r\n"
    b"t: <sip:bob@pbx.local>\r\n"
    b"i: call-1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Max-Forwards: 70\r\n"
    b"Subject: drop me\r\n"
    b"Contact: <sip:alice@10.0.0.1>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 3\r\n"
    b"\r\n"
    b"v=0"
)


def request(data: bytes = INVITE) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response(data: bytes) -> Response:
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def test_forward_request_all_edits() -> None:
    out = request(
        forward_request(
            request(),
            via="SIP/2.0/UDP pbx.local:5060;branch=z9hG4bKp",
            request_uri="sip:bob@10.0.0.7:5062",
            received="192.0.2.9",
            rport=4000,
            pop_routes=1,
            record_route=["<sip:pbx.local;lr>"],
            add_headers=[("Diversion", "<sip:+4922166966966@pbx.local>;reason=unconditional")],
            drop_headers=["subject"],
        )
    )
    assert out.uri == "sip:bob@10.0.0.7:5062"
    assert [v.branch for v in out.vias] == ["z9hG4bKp", "z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]
    assert out.vias[1].received == "192.0.2.9" and out.vias[1].rport == 4000
    assert out.max_forwards == 69
    assert out.header_values("route") == ["<sip:next.example.com;lr>", "<sip:last.example.com;lr>"]
    assert out.header_values("record-route") == ["<sip:pbx.local;lr>", "<sip:earlier.example.com;lr>"]
    assert not out.has_header("subject")
    assert out.header("diversion") == "<sip:+4922166966966@pbx.local>;reason=unconditional"
    assert out.body == b"v=0"
    assert (out.call_id, out.cseq.number, out.from_tag) == ("call-1", 7, "1")


def test_forward_request_minimal_is_almost_the_same_bytes() -> None:
    out = forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", max_forwards=70)
    assert out == INVITE.replace(b"v: SIP", b"Via: SIP/2.0/UDP p;branch=z9hG4bKp\r\nv: SIP", 1)


def test_pop_routes_across_lines_and_errors() -> None:
    out = request(forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", pop_routes=2))
    assert out.header_values("route") == ["<sip:last.example.com;lr>"]
    out = request(forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", pop_routes=3))
    assert not out.has_header("route")
    with pytest.raises(LocalProtocolError):
        forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", pop_routes=4)
    with pytest.raises(LocalProtocolError):
        forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", drop_headers=["v"])
    with pytest.raises(LocalProtocolError):
        forward_request(request(), via="SIP/2.0/UDP p\r\nX: injected")


def test_missing_max_forwards_and_content_length_are_added() -> None:
    bare = (
        b"MESSAGE sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\n"
        b"Call-ID: x\nCSeq: 1 MESSAGE\n\nhello"
    )
    out = request(forward_request(request(bare), via="SIP/2.0/TCP p;branch=z9hG4bKp"))
    assert out.max_forwards == 70
    assert out.header("content-length") == "5" and out.body == b"hello"


def test_forward_response_removes_top_value() -> None:
    shared = response(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKp ,\r\n SIP/2.0/UDP c;branch=z9hG4bKc\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    out = response(forward_response(shared))
    assert [v.branch for v in out.vias] == ["z9hG4bKc"]
    alone = response(build_response(request(), 486, to_tag="t"))
    out = response(forward_response(alone))
    assert [v.branch for v in out.vias] == ["z9hG4bKb", "z9hG4bKc"]
    assert out.status == 486 and out.to_tag == "t"


def test_build_response() -> None:
    data = build_response(request(), 180, to_tag="abc", received="192.0.2.9", rport=4000,
                          headers=[("Contact", "<sip:pbx.local>")])
    out = response(data)
    assert data.startswith(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=4000;"
                           b"received=192.0.2.9\r\n")
    assert [v.branch for v in out.vias] == ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]
    assert out.to_tag == "abc" and out.from_tag == "1"
    assert out.cseq.method == "INVITE" and out.call_id == "call-1"
    assert out.header("content-length") == "0"
    assert response(build_response(request(), 100, to_tag="abc")).to_tag is None
    tagged = parse_message(INVITE.replace(b"t: <sip:bob@pbx.local>", b"t: <sip:bob@pbx.local>;tag=old"))
    assert isinstance(tagged, Request)
    assert response(build_response(tagged, 200, "Fine", to_tag="new")).to_tag == "old"
    assert response(build_response(tagged, 200, "Fine")).reason == "Fine"
    with_body = response(build_response(request(), 200, headers=[("Content-Type", "text/plain")], body=b"hi"))
    assert with_body.body == b"hi"


def test_build_response_to_a_bad_request() -> None:
    from sipfork.sip.message import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        parse_message(INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE"))
    out = response(build_response(info.value.request, info.value.status, to_tag="x"))
    assert out.status == 400 and out.cseq.method == "BYE"


def test_cancel_and_ack() -> None:
    branch = request(forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", pop_routes=1,
                                     request_uri="sip:bob@10.0.0.7"))
    cancel = request(build_cancel(branch, headers=[("Reason", 'SIP;cause=200;text="Call completed elsewhere"')]))
    assert cancel.method == "CANCEL" and cancel.uri == "sip:bob@10.0.0.7"
    assert [v.branch for v in cancel.vias] == ["z9hG4bKp"]
    assert cancel.cseq.number == 7 and cancel.cseq.method == "CANCEL"
    assert cancel.header_values("route") == branch.header_values("route")
    assert cancel.header("reason") == 'SIP;cause=200;text="Call completed elsewhere"'
    busy = response(build_response(branch, 486, to_tag="b"))
    ack = request(build_ack(branch, busy))
    assert ack.method == "ACK" and ack.to_tag == "b" and ack.cseq.method == "ACK"
    assert [v.branch for v in ack.vias] == ["z9hG4bKp"]
    assert ack.header_values("route") == branch.header_values("route")
    with pytest.raises(LocalProtocolError):
        build_ack(branch, response(build_response(branch, 200, to_tag="b")))


def test_build_request() -> None:
    out = request(
        build_request(
            "OPTIONS", SipUri(host="::1", port=5080), via="SIP/2.0/UDP [::1]:5060;branch=z9hG4bKq",
            from_="<sip:pbx.local>;tag=f", to="<sip:[::1]:5080>", call_id="c@pbx", cseq=1,
            headers=[("Accept", "application/sdp")], body=b"",
        )
    )
    assert out.ruri == SipUri(host="::1", port=5080)
    assert out.top_via.host == "::1" and out.cseq.method == "OPTIONS" and out.max_forwards == 70
    with pytest.raises(LocalProtocolError):
        build_request("OPTIONS", "sip:h", via="v", from_="f", to="t", call_id="c\r\nX: y", cseq=1)



def test_cseq_renumbering_both_ways() -> None:
    out = request(forward_request(request(), via="SIP/2.0/UDP p;branch=z9hG4bKp", cseq=8))
    assert out.cseq.number == 8 and out.cseq.method == "INVITE"
    ringing = response(build_response(out, 180, to_tag="t"))
    back = response(forward_response(ringing, cseq=7))
    assert back.cseq.number == 7 and back.cseq.method == "INVITE"

"""Where a new request goes, as a table: each request (from a trusted
gateway unless it says otherwise) and the decision the core then carries
out — an answer here, the registrar, or a forward along a plan."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sipfork.config import parse_config
from sipfork.core.admission import ALLOW, TO_REGISTRAR, Admission, Answer, Forward
from sipfork.core.auth import Authenticator
from sipfork.core.interfaces import Interfaces
from sipfork.core.location import Location
from sipfork.sip.message import Request, parse_message
from tests.core.test_proxy import CALLER, CONFIG, NOW, binding, invite

STRANGER = ("127.0.0.50", 5070)  # not a gateway: needs credentials


def admission(*, calls: frozenset = frozenset(), client: frozenset = frozenset()) -> Admission:
    config = parse_config(CONFIG, path=Path("/tmp/sipfork-test/proxy.toml"))
    location = Location([binding("alice", 6001), binding("alice", 6002)])
    return Admission(config, Interfaces.from_config(config), location, Authenticator(config, secret=b"k" * 32),
                     client=client, calls=calls)


def request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def options_to_proxy() -> bytes:
    return invite(method="OPTIONS").replace(b"OPTIONS sip:alice@pbx.local", b"OPTIONS sip:pbx.local")


ANSWERS = [
    ("OPTIONS to the proxy", options_to_proxy(), CALLER, 200, None, (("Allow", ALLOW), ("Accept", "application/sdp"))),
    ("Max-Forwards 0", invite(max_forwards=0), CALLER, 483, None, ()),
    ("OPTIONS with Max-Forwards 0 (RFC 3261 §16.3)", invite(method="OPTIONS", max_forwards=0), CALLER, 200, None,
     (("Allow", ALLOW), ("Accept", "application/sdp"))),
    ("Proxy-Require", invite(extra="Proxy-Require: foo, bar\r\n"), CALLER, 420, None, (("Unsupported", "foo, bar"),)),
    ("another domain", invite().replace(b"INVITE sip:alice@pbx.local", b"INVITE sip:alice@example.org"), CALLER,
     403, "Not Our Domain", ()),
    ("BYE to the proxy itself", invite(method="BYE").replace(b"BYE sip:alice@pbx.local", b"BYE sip:pbx.local"),
     CALLER, 481, None, (("Allow", ALLOW),)),
    ("nobody of that name", invite("nobody"), CALLER, 404, "Not Found", ()),
    ("Max-Breadth below the fork's width", invite(extra="Max-Breadth: 1\r\n"), CALLER, 440, None, ()),
    ("in a dialog with nobody we know", invite("dave", to_tag="x"), CALLER, 481, None, ()),
    ("a stranger dialling out", invite("+4930999"), STRANGER, 407, None, None),
]


@pytest.mark.parametrize(("data", "source", "status", "reason", "headers"),
                         [case[1:] for case in ANSWERS], ids=[case[0] for case in ANSWERS])
def test_requests_answered_here(data, source, status, reason, headers):
    decision = admission().decide(request(data), source, NOW)
    assert isinstance(decision, Answer)
    assert (decision.status, decision.reason) == (status, reason)
    if headers is None:  # a challenge: its nonce is fresh each time
        assert [name for name, _ in decision.headers] == ["Proxy-Authenticate", "Proxy-Authenticate"]
    else:
        assert decision.headers == headers


def test_a_refused_call_is_logged_after_its_answer():
    decision = admission().decide(request(invite("nobody")), CALLER, NOW)
    assert isinstance(decision, Answer) and decision.log is not None
    assert (decision.log.level, decision.log.message) == (logging.INFO, "call +4930123 → nobody: 404 Not Found")


def test_a_register_for_our_domain_goes_to_the_registrar():
    data = invite(method="REGISTER").replace(b"REGISTER sip:alice@pbx.local", b"REGISTER sip:pbx.local")
    assert admission().decide(request(data), STRANGER, NOW) is TO_REGISTRAR


def test_a_new_call_from_a_gateway_goes_to_the_plan_of_the_number_dialled():
    decision = admission().decide(request(invite()), CALLER, NOW)
    assert isinstance(decision, Forward)
    assert [branch.hop.port for rule in decision.plan.rules for branch in rule.branches] == [6001, 6002]
    assert (decision.pop_routes, decision.max_forwards, decision.record_route) == (0, 69, True)
    assert decision.max_breadth == 60 // 2  # RFC 5393: the default 60 shared by the two branches
    assert decision.drop_headers == ()  # a gateway's request carries no credentials of ours
    assert decision.call_key == ("call-1@test", "caller-tag", 1, "alice")
    assert decision.caller == "+4930123"


def test_an_in_dialog_request_goes_to_its_target_alone():
    data = invite(method="BYE", to_tag="callee", cseq=2).replace(b"BYE sip:alice@pbx.local",
                                                                  b"BYE sip:alice@127.0.0.1:6002")
    decision = admission().decide(request(data), CALLER, NOW)
    assert isinstance(decision, Forward)
    (rule,) = decision.plan.rules
    assert [branch.hop.port for branch in rule.branches] == [6002]
    assert (decision.record_route, decision.max_breadth, decision.call_key, decision.caller) == (False, None, None, "")


def test_the_same_call_for_the_same_number_coming_back_through_us_is_a_loop():
    key = ("call-1@test", "caller-tag", 1, "alice")
    looped = invite(extra="Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours\r\n")
    decision = admission(calls=frozenset({key})).decide(request(looped), CALLER, NOW)
    assert isinstance(decision, Answer) and decision.status == 482
    assert decision.log is not None and decision.log.level == logging.WARNING
    # the same call ringing, but not through us: a new call (a spiral elsewhere)
    assert isinstance(admission(calls=frozenset({key})).decide(request(invite()), CALLER, NOW), Forward)


def test_a_request_we_forked_that_comes_back_needs_no_credentials():
    ours = invite("11", source=STRANGER).replace(b"Via: SIP/2.0/UDP 127.0.0.50:5070;branch=z9hG4bKcaller1;rport",
                                b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours")
    ours = ours.replace(b"Max-Forwards", b"Via: SIP/2.0/UDP 127.0.0.50:5070;branch=z9hG4bKcaller1\r\nMax-Forwards")
    stranger = admission().decide(request(invite("11", source=STRANGER)), STRANGER, NOW)
    assert isinstance(stranger, Answer) and stranger.status == 407
    decision = admission(client=frozenset({("z9hG4bKours", "INVITE")})).decide(request(ours), STRANGER, NOW)
    assert isinstance(decision, Forward)

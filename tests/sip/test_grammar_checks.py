"""The str-method checks of grammar.py and the usual-Via fast path of
headers.py against the regular expressions they replaced (the patterns
below are their specification), on arbitrary text and on text built to
come close to passing."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.grammar import TOKEN_CHARS, is_digits, is_hostname, is_token
from sipfork.sip.headers import Via, _parse_via, _plain_via_parts

TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"
HOSTNAME = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?"
DIGITS = r"[0-9]{1,10}"
PLAIN_VIA = (
    r"SIP/2\.0/([A-Za-z]+) (" + HOSTNAME + r")(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9.!%*_+`'~-]+(?:=[^ \t\r\n\"<>;]+)?)*)"
)

# Near misses: the characters that matter at the edges, and some that never pass.
edgy = st.text(TOKEN_CHARS + "_.-:; =\"<>\t\r\n/é٣²" + "\x00", max_size=12)


@pytest.mark.parametrize(("check", "pattern"), [(is_digits, DIGITS), (is_token, TOKEN), (is_hostname, HOSTNAME)])
@given(text=st.text(max_size=12) | edgy)
@example(text="")
@example(text="٣")  # a digit, but not an ASCII one
@example(text="²")
@example(text="a b")
@example(text="é")
@example(text="-a")
@example(text="a-")
@example(text=".a")
@example(text="a.")
@example(text="_")
@example(text="-")
def test_each_check_takes_what_its_pattern_took(check: Callable[[str], bool], pattern: str, text: str) -> None:
    assert check(text) == (re.fullmatch(pattern, text) is not None)


param = st.tuples(st.text(TOKEN_CHARS + " =", max_size=5), st.none() | st.text(TOKEN_CHARS + " =\"<>;:@", max_size=6))
vias = st.builds(
    lambda version, transport, host, port, params: (
        f"SIP/{version}/{transport} {host}{port}"
        + "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)
    ),
    st.sampled_from(["2.0", "2.0", "2.1"]),
    st.sampled_from(["UDP", "tcp", "Tls", "SCTP", "U1", ""]),
    st.sampled_from(["127.0.0.1", "pbx.example", "h", "-h", "h-", "[::1]", "a_b.c", ""]),
    st.sampled_from(["", ":5060", ":0", ":65535", ":65536", ":123456", ":", ":x"]),
    st.lists(param, max_size=4),
)


@given(vias | edgy.map(lambda tail: "SIP/2.0/UDP h" + tail))
@example("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport")
@example("SIP/2.0/UDP h;branch=a=b")
@example("SIP/2.0/UDP h;;rport")
@example("SIP/2.0/UDP h;rport;")
@example("SIP/2.0/UDP h;x=")
@example("SIP/2.0/UDP  h")
@example("SIP/2.0/UDP h ")
@example("SIP/2.0/UDP h:65536;branch=b")
@example("SIP/2.0/UDP h;rport=x")
@example("SIP/2.0/UDP h;branch")
@example("SIP/2.0/UDP h;a=b c")
@example('SIP/2.0/UDP h;a="b"')
@example("SIP/2.0/UDP h;a=<b>")
@settings(max_examples=500)
def test_the_usual_via_is_the_pattern_and_parses_as_the_general_path_does(text: str) -> None:
    fast = _plain_via_parts(text)
    match = re.fullmatch(PLAIN_VIA, text)
    assert (fast is not None) == (match is not None)
    if fast is None or match is None:
        return
    transport, host, port, params = fast
    assert (transport, host, port) == (match[1], match[2], None if match[3] is None else int(match[3]))
    # With spaces around the slashes the value is never the usual form: the
    # general path parses it, and must say the same (or refuse the same).
    general = _outcome("SIP / 2.0 / " + text[8:])
    assert _outcome(text) == general
    if isinstance(general, Via):
        assert general.params == params


def _outcome(text: str) -> Via | str:
    try:
        return _parse_via(text)
    except RemoteProtocolError:
        return "refused"

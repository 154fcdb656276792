"""Digest authentication (RFC 2617 §3.5, RFC 7616 §3.9.1 test vectors; RFC 8760)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipfork.sip.digest import (
    Challenge,
    Credentials,
    _parse_auth_params_exact,
    digest_response,
    format_challenge,
    format_credentials,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
)
from sipfork.sip.errors import LocalProtocolError, RemoteProtocolError


def test_rfc2617_example() -> None:
    assert (
        digest_response(
            algorithm="MD5", username="Mufasa", realm="testrealm@host.com", password="Circle Of Life",
            method="GET", uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            cnonce="0a4f113b", nc="00000001", qop="auth",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm, username="Mufasa", realm="http-auth@example.org", password="Circle of Life",
            method="GET", uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", nc="00000001", qop="auth",
        )
        == expected
    )


def test_rfc2069_and_sess() -> None:
    plain = digest_response(algorithm="md5", username="u", realm="r", password="p", method="REGISTER",
                            uri="sip:r", nonce="n")
    assert len(plain) == 32
    sess = digest_response(algorithm="SHA-256-sess", username="u", realm="r", password="p", method="REGISTER",
                           uri="sip:r", nonce="n", cnonce="c", nc="00000001", qop="auth")
    assert len(sess) == 64
    with pytest.raises(LocalProtocolError):
        digest_response(algorithm="SHA-512", username="u", realm="r", password="p", method="M", uri="u", nonce="n")
    with pytest.raises(LocalProtocolError):
        digest_response(algorithm="MD5-sess", username="u", realm="r", password="p", method="M", uri="u", nonce="n")


def test_challenge_round_trip() -> None:
    challenge = Challenge(realm='pbx "local"', nonce="abc\\def", algorithm="SHA-256", opaque="o", stale=True)
    text = format_challenge(challenge)
    assert text.startswith('Digest realm="pbx \\"local\\"", nonce="abc\\\\def", algorithm=SHA-256, qop="auth"')
    assert parse_challenge(text) == challenge
    assert parse_challenge(format_challenge(Challenge(realm="r", nonce="n", qop=None))) == Challenge(
        realm="r", nonce="n", qop=None
    )


def test_tolerant_parsing() -> None:
    c = parse_challenge('digest  realm = "r" ,nonce="n",  algorithm=sha-256,foo="bar, baz",qop="auth,auth-int"')
    assert c == Challenge(realm="r", nonce="n", algorithm="SHA-256", qop="auth,auth-int")
    creds = parse_credentials(
        'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'uri="sip:bob@biloxi.com", qop=auth, nc=00000001, cnonce="0a4f113b", '
        'response="6629FAE49393A05397450978507C4EF1", opaque="5ccc069c403ebaf9f0171e9517f40e41", unknown=1'
    )
    assert creds == Credentials(
        username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:bob@biloxi.com",
        response="6629fae49393a05397450978507c4ef1", algorithm="MD5", cnonce="0a4f113b", nc="00000001", qop="auth",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )
    assert parse_credentials(format_credentials(creds)) == creds


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Basic dXNlcjpwYXNz",
        'Digest realm="r"',  # no username, nonce, uri, response
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-1',
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth',  # no cnonce/nc
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth-int, nc=00000001, cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=1, cnonce="c"',
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", algorithm=MD5-sess',
        'Digest username="u', 
        'Digest username',
        'Digest username="u" realm="r"',
        'Digest =x',
        'Digest username=<u>',
    ],
)
def test_bad_credentials(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_credentials(value)
    assert info.value.status == 400


@pytest.mark.parametrize("value", ['Digest nonce="n"', 'Digest realm="r"', 'Digest realm="r", nonce="n", algorithm=X'])
def test_bad_challenges(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_challenge(value)


# -- the regular-expression fast path of parse_auth_params ----------------------

_TOKEN_CHARS = "abcXYZ019.!%*_+`'~-"
_tokens = st.text(alphabet=_TOKEN_CHARS, min_size=1, max_size=6)
_white = st.text(alphabet=" \t\r\n", max_size=2)
# Quoted text with what makes the loop work: escapes, quotes, commas, '=', CR LF.
_quoted_text = st.lists(
    st.sampled_from(list('ab ,=\\"\t\r\n\u00e9') + ["\\\\", '\\"']), max_size=8
).map("".join)


def _plain_quoted(text: str) -> str:
    return '"' + text.replace("\\", "").replace('"', "") + '"'


def _escaped_quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _auth_param_lists(draw: st.DrawFn) -> str:
    """``Scheme`` and an auth-param list: well formed, or with one flaw (``broken``)."""
    broken = draw(st.booleans())

    def pick(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> str:
        if broken and draw(st.integers(min_value=0, max_value=4)) == 0:
            return draw(bad)
        return draw(good)

    parts = [pick(st.sampled_from(["Digest", "digest", "DIGEST"]), st.sampled_from(["Dig:est", "", "é"])), " "]
    parts.append(draw(st.text(alphabet=" ,\t", max_size=3)))
    for index in range(draw(st.integers(min_value=0, max_value=5))):
        if index:
            parts.append(pick(st.sampled_from([",", ", ", " ,", ",,", " , \t", ",\r\n "]), st.sampled_from([" ", ""])))
        parts.append(pick(_tokens, st.sampled_from(["", "na me", "é", '"a"'])))
        parts += [draw(_white), pick(st.just("="), st.sampled_from(["", ":", "=="])), draw(_white)]
        parts.append(
            pick(
                st.one_of(_tokens, _quoted_text.map(_plain_quoted), _quoted_text.map(_escaped_quoted)),
                st.one_of(
                    _quoted_text.map(lambda text: f'"{text}"'),  # escapes, or a stray quote
                    _quoted_text.map(lambda text: f'"{text}'),  # unterminated
                    st.sampled_from(["", "a b", "x;y", '"a"b', '"a\\"']),
                ),
            )
        )
        parts.append(draw(_white))
    parts.append(draw(st.text(alphabet=" ,\t\r\n", max_size=3)))
    return "".join(parts)


def _outcome(parse, value: str) -> object:
    try:
        return parse(value)
    except RemoteProtocolError as error:
        return ("error", str(error), error.status)


@settings(max_examples=2000)
@given(_auth_param_lists())
def test_parse_auth_params_equals_the_character_loop(value: str) -> None:
    assert _outcome(parse_auth_params, value) == _outcome(_parse_auth_params_exact, value)


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list('Digest a=",\\ \t\r\n') + ["\u00e9", "\x00"]), max_size=30))
def test_parse_auth_params_equals_the_character_loop_on_any_text(value: str) -> None:
    assert _outcome(parse_auth_params, value) == _outcome(_parse_auth_params_exact, value)


@pytest.mark.parametrize(
    "value",
    [
        (
            'Digest username="u000001",realm="bench.local",cnonce="6b8b4567",nc=00000001,qop=auth,'
            'uri="sip:bench.local",nonce="18bfcc1a2c0.1.0123",response="0123abcd",algorithm=MD5'
        ),
        'Digest realm="a\\"b", nonce=x',  # an escape: the loop
        "Digest  , a = b ,, c=\"\" ,",
        "Digest a=b c=d",  # missing comma: the loop words the error
        'Digest a="unterminated',
        "Digest A=1, a=2",  # the first of a repeated name
    ],
)
def test_parse_auth_params_examples(value: str) -> None:
    assert _outcome(parse_auth_params, value) == _outcome(_parse_auth_params_exact, value)

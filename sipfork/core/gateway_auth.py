"""Answering a gateway's digest challenge (RFC 3261 §22.2, RFC 8760).

The proxy is the client here: a SIP trunk challenges the INVITEs we send it,
and we answer with the gateway's username and password from proxy.toml.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipfork.sip.digest import Challenge, Credentials, digest_response, format_credentials, parse_challenge
from sipfork.sip.errors import RemoteProtocolError

# Strongest first: RFC 8760 asks a client to take the first it supports of
# what the server offers, and a server lists its preference first; among
# equals we prefer SHA-256.
_SUPPORTED = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


def pick_challenge(values: Iterable[str]) -> Challenge | None:
    """The challenge to answer from the response's header values, or None."""
    challenges: list[Challenge] = []
    for value in values:
        try:
            challenges.append(parse_challenge(value))
        except RemoteProtocolError:
            continue  # another scheme (Basic …) or an algorithm we do not know
    known = [c for c in challenges if c.algorithm in _SUPPORTED]
    if not known:
        return None
    return min(known, key=lambda c: _SUPPORTED.index(c.algorithm))


def answer_challenge(values: Iterable[str], *, username: str, password: str, method: str, uri: str,
                     cnonce: str) -> str | None:
    """The Authorization/Proxy-Authorization value answering the best of the
    challenges, or None when none is answerable."""
    challenge = pick_challenge(values)
    if challenge is None:
        return None
    qop = "auth" if challenge.qop is not None and "auth" in [q.strip() for q in challenge.qop.split(",")] else None
    nc = "00000001" if qop else None
    response = digest_response(algorithm=challenge.algorithm, username=username, realm=challenge.realm,
                               password=password, method=method, uri=uri, nonce=challenge.nonce,
                               cnonce=cnonce if qop or challenge.algorithm.endswith("-sess") else None,
                               nc=nc, qop=qop)
    return format_credentials(Credentials(
        username=username, realm=challenge.realm, nonce=challenge.nonce, uri=uri, response=response,
        algorithm=challenge.algorithm, cnonce=cnonce if qop or challenge.algorithm.endswith("-sess") else None,
        nc=nc, qop=qop, opaque=challenge.opaque,
    ))

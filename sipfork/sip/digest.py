"""HTTP Digest authentication for SIP (RFC 3261 §22.4, RFC 2617, RFC 7616, RFC 8760).

Algorithms: MD5 and SHA-256 with their ``-sess`` variants (RFC 8760 §2
registers SHA-256 for SIP); quality of protection ``auth`` or none (the
RFC 2069 compatibility form).  Challenges (WWW-/Proxy-Authenticate) and
credentials (Authorization/Proxy-Authorization) are parsed tolerantly:
white space around ``=`` and ``,``, any case for names and the scheme,
quoted strings with backslash escapes, unknown parameters ignored.
"""

from __future__ import annotations

import hashlib
import re

from attrs import frozen

from sipfork.sip.errors import LocalProtocolError, RemoteProtocolError
from sipfork.sip.grammar import quote

#: Canonical names of the algorithms we can compute, by their lowercase form.
ALGORITHMS: dict[str, str] = {
    "md5": "MD5",
    "md5-sess": "MD5-sess",
    "sha-256": "SHA-256",
    "sha-256-sess": "SHA-256-sess",
}
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_TOKEN_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
_NC_RE = re.compile(r"[0-9A-Fa-f]{8}")
# The usual auth-param list: ``name=token`` or ``name="text"`` (no backslash),
# white space around ``=``, a comma after each but the last, extra commas and
# white space anywhere between. Names, values and separators use disjoint
# characters, so a failing match backtracks only linearly.
_TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"
_WHITE = r"[ \t\r\n]*"
_PARAM_RE = re.compile(rf'({_TOKEN}){_WHITE}={_WHITE}(?:"([^"\\]*)"|({_TOKEN}))')
_PARAM_LIST_RE = re.compile(
    rf'[ \t\r\n,]*(?:{_TOKEN}{_WHITE}={_WHITE}(?:"[^"\\]*"|{_TOKEN}){_WHITE}(?:,[ \t\r\n,]*|\Z))*'
)


def canonical_algorithm(name: str) -> str:
    """``"sha-256"`` → ``"SHA-256"``; RemoteProtocolError(400) when unsupported."""
    canonical = ALGORITHMS.get(name.lower())
    if canonical is None:
        raise RemoteProtocolError(f"unsupported digest algorithm {name!r}")
    return canonical


@frozen(kw_only=True)
class Challenge:
    """A Digest challenge (RFC 7616 §3.3; RFC 3261 §22.4 makes realm and nonce mandatory)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: str | None = "auth"
    opaque: str | None = None
    stale: bool = False


@frozen(kw_only=True)
class Credentials:
    """Digest credentials (RFC 7616 §3.4).  ``nc`` is the 8 hex digits as sent."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``Scheme name=value, name="quoted"`` into the scheme and lowercase-named params.

    Quoted values are unescaped; a repeated name keeps its first value.

    The usual list (tokens and quoted strings without backslashes, commas
    between them) is checked and split by two compiled expressions; anything
    else (escapes, a syntax error) goes through the exact character loop,
    which also words the errors. Both give the same result (a hypothesis test
    compares them).
    """
    text = value.strip(" \t\r\n")
    scheme, _, rest = text.partition(" ")
    if not scheme or _TOKEN_RE.fullmatch(scheme) is None:
        raise RemoteProtocolError(f"bad authentication scheme in {value[:60]!r}")
    if _PARAM_LIST_RE.fullmatch(rest) is None:
        return scheme, _parse_param_list(value, rest)
    params: dict[str, str] = {}
    for name, quoted, token in _PARAM_RE.findall(rest):
        name = name.lower()
        if name not in params:
            params[name] = quoted or token
    return scheme, params


def _parse_auth_params_exact(value: str) -> tuple[str, dict[str, str]]:
    """``parse_auth_params`` by the character loop alone (the reference for tests)."""
    text = value.strip(" \t\r\n")
    scheme, _, rest = text.partition(" ")
    if not scheme or _TOKEN_RE.fullmatch(scheme) is None:
        raise RemoteProtocolError(f"bad authentication scheme in {value[:60]!r}")
    return scheme, _parse_param_list(value, rest)


def _parse_param_list(value: str, rest: str) -> dict[str, str]:
    """The auth-params after the scheme, one character at a time (any input)."""
    params: dict[str, str] = {}
    i = 0
    n = len(rest)
    while i < n:
        char = rest[i]
        if char in " \t\r\n,":
            i += 1
            continue
        match = _TOKEN_RE.match(rest, i)
        if match is None:
            raise RemoteProtocolError(f"bad auth-param in {value[:60]!r}")
        name = match.group().lower()
        i = match.end()
        while i < n and rest[i] in " \t\r\n":
            i += 1
        if i >= n or rest[i] != "=":
            raise RemoteProtocolError(f"auth-param {name!r} without a value")
        i += 1
        while i < n and rest[i] in " \t\r\n":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise RemoteProtocolError("unterminated quoted string")
                char = rest[i]
                if char == "\\" and i + 1 < n:
                    chars.append(rest[i + 1])
                    i += 2
                    continue
                if char == '"':
                    i += 1
                    break
                chars.append(char)
                i += 1
            param = "".join(chars)
        else:
            match = _TOKEN_RE.match(rest, i)
            if match is None:
                raise RemoteProtocolError(f"bad value of {name!r}")
            param = match.group()
            i = match.end()
        params.setdefault(name, param)
        while i < n and rest[i] in " \t\r\n":
            i += 1
        if i < n and rest[i] != ",":
            raise RemoteProtocolError(f"missing comma after {name!r}")
    return params


def _digest_params(value: str) -> dict[str, str]:
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise RemoteProtocolError(f"not a Digest value: {scheme!r}")
    return params


def _required(params: dict[str, str], name: str) -> str:
    found = params.get(name)
    if found is None:
        raise RemoteProtocolError(f"Digest without {name}")
    return found


def parse_challenge(value: str) -> Challenge:
    """Parse a WWW-Authenticate / Proxy-Authenticate value (RFC 7616 §3.3)."""
    params = _digest_params(value)
    return Challenge(
        realm=_required(params, "realm"),
        nonce=_required(params, "nonce"),
        algorithm=canonical_algorithm(params.get("algorithm", "MD5")),
        qop=params.get("qop"),
        opaque=params.get("opaque"),
        stale=params.get("stale", "false").lower() == "true",
    )


def format_challenge(challenge: Challenge) -> str:
    """The header value ``Digest realm="...", nonce="...", ...`` (RFC 7616 §3.3)."""
    parts = [
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"algorithm={challenge.algorithm}",
    ]
    if challenge.qop is not None:
        parts.append(f"qop={quote(challenge.qop)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if challenge.stale:
        parts.append("stale=true")
    return "Digest " + ", ".join(parts)


def parse_credentials(value: str) -> Credentials:
    """Parse an Authorization / Proxy-Authorization value (RFC 7616 §3.4).

    RemoteProtocolError(400) when a mandatory parameter is missing, the
    algorithm is unsupported, or ``qop`` is given without ``cnonce``/``nc``
    (or is anything but ``auth``, the only qop we offer).
    """
    params = _digest_params(value)
    qop = params.get("qop")
    cnonce = params.get("cnonce")
    nc = params.get("nc")
    if qop is not None:
        if qop.lower() != "auth":
            raise RemoteProtocolError(f"unsupported qop {qop!r}")
        qop = "auth"
        if cnonce is None or nc is None:
            raise RemoteProtocolError("qop without cnonce and nc")
    if nc is not None and _NC_RE.fullmatch(nc) is None:
        raise RemoteProtocolError(f"bad nc {nc!r}")
    algorithm = canonical_algorithm(params.get("algorithm", "MD5"))
    if algorithm.endswith("-sess") and cnonce is None:
        raise RemoteProtocolError(f"{algorithm} without cnonce")
    return Credentials(
        username=_required(params, "username"),
        realm=_required(params, "realm"),
        nonce=_required(params, "nonce"),
        uri=_required(params, "uri"),
        response=_required(params, "response").lower(),
        algorithm=algorithm,
        cnonce=cnonce,
        nc=nc,
        qop=qop,
        opaque=params.get("opaque"),
    )


def format_credentials(credentials: Credentials) -> str:
    """The header value ``Digest username="...", ...`` (RFC 7616 §3.4)."""
    parts = [
        f"username={quote(credentials.username)}",
        f"realm={quote(credentials.realm)}",
        f"nonce={quote(credentials.nonce)}",
        f"uri={quote(credentials.uri)}",
        f"response={quote(credentials.response)}",
        f"algorithm={credentials.algorithm}",
    ]
    if credentials.cnonce is not None:
        parts.append(f"cnonce={quote(credentials.cnonce)}")
    if credentials.nc is not None:
        parts.append(f"nc={credentials.nc}")
    if credentials.qop is not None:
        parts.append(f"qop={credentials.qop}")
    if credentials.opaque is not None:
        parts.append(f"opaque={quote(credentials.opaque)}")
    return "Digest " + ", ".join(parts)


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    cnonce: str | None = None,
    nc: str | None = None,
    qop: str | None = None,
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1, RFC 2617 §3.2.2.1), lowercase hex.

    ``-sess`` variants hash the nonce and cnonce into A1 (§3.4.2); with
    ``qop=auth`` the nonce count and cnonce enter the final hash.
    """
    name = ALGORITHMS.get(algorithm.lower())
    if name is None:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    session = name.endswith("-sess")
    hash_function = _HASHES[name.removesuffix("-sess")]

    def digest(text: str) -> str:
        return hash_function(text.encode("utf-8", "surrogateescape")).hexdigest()

    ha1 = digest(f"{username}:{realm}:{password}")
    if session:
        if cnonce is None:
            raise LocalProtocolError("a -sess algorithm needs a cnonce")
        ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
    ha2 = digest(f"{method}:{uri}")
    if qop is None:
        return digest(f"{ha1}:{nonce}:{ha2}")
    if qop != "auth" or cnonce is None or nc is None:
        raise LocalProtocolError(f"qop {qop!r} needs auth with cnonce and nc")
    return digest(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")

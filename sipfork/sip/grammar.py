"""Shared pieces of the SIP grammar (RFC 3261 §25), compiled once.

Everything here is small and pure: the header-name table with compact forms,
token checks, and quote- and angle-bracket-aware splitting of comma lists and
``;name=value`` parameter lists.  The typed views (URIs, Via, CSeq, ...) in
``uri.py`` and ``headers.py`` are built from these pieces.

All functions raise only :class:`RemoteProtocolError` on malformed input.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sipfork.sip.errors import RemoteProtocolError

Params = tuple[tuple[str, "str | None"], ...]

#: RFC 3261 §7.3.3 and the registry of compact forms (RFC 3515 r/b,
#: RFC 3265 o/u, RFC 3841 j/d/a, RFC 4028 x, RFC 8224 y).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

#: Headers whose value may contain unquoted commas that do not separate list
#: elements (RFC 3261 §7.3.1: they are not of the ``#element`` form).
NON_LIST_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "www-authenticate",
        "proxy-authenticate",
        "authentication-info",
        "date",
        "call-id",
        "cseq",
        "subject",
        "organization",
        "server",
        "user-agent",
        "retry-after",
        "timestamp",
        "identity",
    }
)

# The checks every message meets (a token, digits, a host name) are made
# with str methods rather than regular expressions: a message that comes
# after the proxy was idle finds the regular-expression engine's code cold
# (benchmarks/README.md, "Where the time goes at low load"); without it such
# messages took 2.5% less time. tests/sip/test_grammar_checks.py holds each
# check to the pattern it replaces.

#: The characters of an RFC 3261 §25.1 ``token``.
TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.!%*_+`'~-"
# hostname / IPv4address characters (tolerating "_" as deployed DNS names do).
_HOST_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
#: The inside of an IPv6reference (RFC 3261 §25.1), without the brackets.
IPV6_RE = re.compile(r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*")
#: A folded line break: CRLF (or bare LF) followed by white space (RFC 3261 §7.3.1).
FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]+")
LWS = " \t\r\n"
# An unquoted generic-param value: token or host, so no white space, quotes or <>.
_PARAM_VALUE_RE = re.compile(r'[^ \t\r\n"<>]+')


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 3261 ``token`` (1*token-char)."""
    return text != "" and text.strip(TOKEN_CHARS) == ""


def is_digits(text: str) -> bool:
    """One to ten ASCII digits (a length, a count, a port, a CSeq number)."""
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


def is_hostname(text: str) -> bool:
    """A hostname or IPv4 address as written: letters, digits, "_", "." and
    "-", neither starting with "." or "-" nor ending with "-"."""
    return text != "" and text.strip(_HOST_CHARS) == "" and text[0] not in ".-" and text[-1] != "-"


@lru_cache(maxsize=512)
def header_key(name: str) -> bytes:
    """The index key of a header name: lowercase long form, as bytes.

    ``"v"``, ``"V"`` and ``"Via"`` all give ``b"via"`` (RFC 3261 §7.3.3).
    """
    lowered = name.strip(LWS).lower()
    return COMPACT_FORMS.get(lowered, lowered).encode("latin-1", "replace")


#: The same mapping on raw bytes, used by the parser while indexing.
COMPACT_KEYS: dict[bytes, bytes] = {k.encode(): v.encode() for k, v in COMPACT_FORMS.items()}


def unfold(text: str) -> str:
    """Replace folded line breaks by one space (RFC 3261 §7.3.1)."""
    if "\n" in text:
        return FOLD_RE.sub(" ", text)
    return text


def parse_port(text: str) -> int:
    """A port number 0..65535, else 400."""
    text = text.strip(LWS)
    if not is_digits(text) or int(text) > 65535:
        raise RemoteProtocolError(f"bad port {text!r}")
    return int(text)


def parse_host(text: str) -> str:
    """Validate a host (hostname, IPv4 or bracketed IPv6); IPv6 loses its brackets."""
    if text.startswith("["):
        if not text.endswith("]") or IPV6_RE.fullmatch(text[1:-1]) is None:
            raise RemoteProtocolError(f"bad IPv6 reference {text!r}")
        return text[1:-1]
    if not is_hostname(text):
        raise RemoteProtocolError(f"bad host {text!r}")
    return text


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host [":" port]`` → (host without brackets, port or None)."""
    text = text.strip(LWS)
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise RemoteProtocolError(f"bad IPv6 reference {text!r}")
        host = parse_host(text[: close + 1])
        rest = text[close + 1 :].strip(LWS)
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise RemoteProtocolError(f"bad host and port {text!r}")
        return host, parse_port(rest[1:])
    host, colon, port = text.partition(":")
    host = parse_host(host.strip(LWS))
    return host, (parse_port(port) if colon else None)


def format_host(host: str) -> str:
    """Bracket an IPv6 address for use in a URI or Via (RFC 3261 §25.1)."""
    return f"[{host}]" if ":" in host else host


def quote(text: str) -> str:
    """Make a ``quoted-string`` (RFC 3261 §25.1), escaping ``"`` and ``\\``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(text: str) -> str:
    """Undo :func:`quote`; text that is not quoted is returned unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        escaped = False
        for char in inner:
            if escaped:
                out.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            else:
                out.append(char)
        return "".join(out)
    return text


def end_of_quoted(text: str, start: int) -> int:
    """Index just past the quoted-string that opens at ``text[start]``."""
    i = start + 1
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            return i + 1
        i += 1
    raise RemoteProtocolError("unterminated quoted string")


def split_outside(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is outside quotes and ``<...>``.

    Used for comma lists (RFC 3261 §7.3.1) and ``;`` parameter lists.
    """
    if separator not in text:
        return [text]
    if '"' not in text and "<" not in text:
        return text.split(separator)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == '"':
            i = end_of_quoted(text, i)
            continue
        if char == "<":
            close = text.find(">", i)
            if close < 0:
                raise RemoteProtocolError("unterminated <")
            i = close + 1
            continue
        if char == separator:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_commas(text: str) -> list[str]:
    """The elements of a comma-separated header value, stripped, empty ones dropped."""
    return [part.strip(LWS) for part in split_outside(text, ",") if part.strip(LWS)]


def parse_params(text: str) -> Params:
    """``;name[=value]`` parameters (generic-param, RFC 3261 §25.1).

    ``text`` is what follows the first ``;``.  Values keep their quotes so the
    parameter serialises back exactly; names keep their case (look them up
    case-insensitively with :func:`find_param`).
    """
    params: list[tuple[str, str | None]] = []
    for part in split_outside(text, ";"):
        name, eq, value = part.partition("=")
        name = name.strip(LWS)
        if not name:
            if eq or part.strip(LWS):
                raise RemoteProtocolError(f"bad parameter {part!r}")
            continue  # tolerate a stray ";" as many phones send one
        if not is_token(name):
            raise RemoteProtocolError(f"bad parameter name {name!r}")
        if eq:
            value = value.strip(LWS)
            if value.startswith('"'):
                if end_of_quoted(value, 0) != len(value):
                    raise RemoteProtocolError(f"bad quoted parameter {part!r}")
            elif _PARAM_VALUE_RE.fullmatch(value) is None:
                raise RemoteProtocolError(f"bad parameter value {part!r}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


#: Header parameters in their usual form: ``;token`` or ``;token=value`` with
#: a plain value (no white space, quotes, ``<>`` or ``;``), no stray ``;``.
#: What this matches, :func:`parse_params` parses the same as
#: :func:`split_plain_params` does, only slower.
PLAIN_PARAMS = r"(?:;[A-Za-z0-9.!%*_+`'~-]+(?:=[^ \t\r\n\"<>;]+)?)*"


def split_plain_params(text: str) -> Params:
    """Parameters matched by :data:`PLAIN_PARAMS` (``text`` starts with ``;``)."""
    if not text:
        return ()
    params: list[tuple[str, str | None]] = []
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        params.append((name, value) if eq else (name, None))
    return tuple(params)


def find_param(params: Params, name: str) -> str | None:
    """The value of parameter ``name`` (case-insensitive), or None."""
    name = name.lower()
    for key, value in params:
        if key.lower() == name:
            return value
    return None


def has_param(params: Params, name: str) -> bool:
    """Whether parameter ``name`` (case-insensitive) is present."""
    name = name.lower()
    return any(key.lower() == name for key, _ in params)


def format_params(params: Params) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)

"""SIP, SIPS and tel URIs and name-addr values.

- SIP/SIPS URIs: RFC 3261 §19.1 (grammar §25.1).  Escaped characters in the
  user, password, parameters and headers are decoded on parsing
  (§19.1.4: ``%61lice`` is ``alice``) and re-escaped by ``__str__``.
- tel URIs: RFC 3966.
- name-addr / addr-spec: RFC 3261 §20.10 (Contact), §20.20 (From), §20.39 (To);
  in the addr-spec form every ``;`` parameter belongs to the header, not the URI.
"""

from __future__ import annotations

import re
from urllib.parse import quote as percent_quote
from urllib.parse import unquote as percent_unquote

from attrs import field, frozen

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.grammar import (
    LWS,
    PLAIN_PARAMS,
    Params,
    end_of_quoted,
    find_param,
    format_host,
    format_params,
    has_param,
    parse_params,
    quote,
    split_hostport,
    split_plain_params,
    unquote,
)

# Characters a component may carry unescaped (RFC 3261 §25.1); everything
# else is %-escaped when serialising.
_UNRESERVED = "-_.!~*'()"
_USER_SAFE = _UNRESERVED + "&=+$,;?/"
_PASSWORD_SAFE = _UNRESERVED + "&=+$,"
_PARAM_SAFE = _UNRESERVED + "[]/:&+$"
_HEADER_SAFE = _UNRESERVED + "[]/?:+$"
# A URI never holds white space, controls, quotes or angle brackets.
_URI_CHARS_RE = re.compile(r"[^\x00-\x20\x7f<>\"]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#().\-pPwW]+")

_LWS_RE = re.compile(r"[ \t\r\n]+")
# The usual sip: URI: no password, nothing escaped, no headers; a host name or
# IPv4 address (what grammar.is_hostname takes), an optional port, plain parameters.
_PLAIN_SIP_URI_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9_.!~*'()&=+$,;?/-]+)@)?([A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?)"
    r"(?::([0-9]{1,5}))?((?:;[A-Za-z0-9_.!~*'()\[\]/:&+$-]+(?:=[A-Za-z0-9_.!~*'()\[\]/:&+$-]+)?)*)"
)
# The usual name-addr: an optional quoted display name without escapes, then
# <uri> and plain header parameters, no white space around them.
_PLAIN_NAME_ADDR_RE = re.compile(r'(?:"([^"\\\r\n]*)" ?)?<([^<>"\s]+)>(' + PLAIN_PARAMS + ")")

SUPPORTED_SCHEMES = ("sip", "sips", "tel")


def _unescape(text: str) -> str:
    return percent_unquote(text, errors="surrogateescape") if "%" in text else text


def _escape(text: str, safe: str) -> str:
    return percent_quote(text, safe=safe, errors="surrogateescape")


def _parse_uri_params(text: str) -> Params:
    """``;name[=value]`` URI parameters (uri-parameters), unescaped."""
    params: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        if not part:
            continue  # a stray ";" is harmless
        name, eq, value = part.partition("=")
        if not name:
            raise RemoteProtocolError(f"bad URI parameter {part!r}")
        params.append((_unescape(name), _unescape(value) if eq else None))
    return tuple(params)


def _format_uri_params(params: Params) -> str:
    return "".join(
        f";{_escape(k, _PARAM_SAFE)}" if v is None else f";{_escape(k, _PARAM_SAFE)}={_escape(v, _PARAM_SAFE)}"
        for k, v in params
    )


@frozen(kw_only=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1.1).

    ``host`` has no brackets; ``user``/``password``/parameters/headers are
    stored unescaped.  ``transport`` is the lowercased ``transport`` parameter,
    ``"udp"`` when absent.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    transport: str = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        value = find_param(self.params, "transport")
        object.__setattr__(self, "transport", value.lower() if value else "udp")

    def param(self, name: str) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive); None if absent or valueless."""
        return find_param(self.params, name)

    def has_param(self, name: str) -> bool:
        """Whether URI parameter ``name`` is present (e.g. ``lr``)."""
        return has_param(self.params, name)

    @property
    def host_port(self) -> tuple[str, int | None]:
        """``(host, port)``; the port is None when the URI names none."""
        return self.host, self.port

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(_escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":" + _escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(format_host(self.host))
        if self.port is not None:
            parts.append(f":{self.port}")
        parts.append(_format_uri_params(self.params))
        if self.headers:
            parts.append(
                "?"
                + "&".join(
                    f"{_escape(k, _HEADER_SAFE)}={_escape(v, _HEADER_SAFE)}" for k, v in self.headers
                )
            )
        return "".join(parts)


@frozen(kw_only=True)
class TelUri:
    """A ``tel:`` URI (RFC 3966): the number as written and its parameters."""

    number: str
    params: Params = ()

    def param(self, name: str) -> str | None:
        """The value of parameter ``name`` (case-insensitive), e.g. ``phone-context``."""
        return find_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def __str__(self) -> str:
        return f"tel:{self.number}{_format_uri_params(self.params)}"


# Parsed values by their text. They are immutable, and the same texts come
# again and again (the Request-URI of every call to a user, a dialog's From in
# its INVITE, ACK and BYE): one object serves them all. Bounded; errors are
# not kept.
_CACHE_LIMIT = 4096
_CACHEABLE = 256  # longer texts are parsed every time
_URIS: dict[str, SipUri | TelUri] = {}
_NAME_ADDRS: dict[str, NameAddr] = {}


def parse_uri(text: str) -> SipUri | TelUri:
    """Parse a SIP, SIPS or tel URI.

    Raises RemoteProtocolError: 416 for a well-formed URI of another scheme
    (RFC 3261 §21.4.15), 400 for anything malformed.
    """
    known = _URIS.get(text)
    if known is not None:
        return known
    uri = _parse_uri(text)
    if len(text) <= _CACHEABLE:
        if len(_URIS) >= _CACHE_LIMIT:
            _URIS.clear()
        _URIS[text] = uri
    return uri


def _parse_uri(text: str) -> SipUri | TelUri:
    fast = _PLAIN_SIP_URI_RE.fullmatch(text)
    if fast is not None:
        # The usual form: one regular expression does what the general path
        # below checks, and nothing in it is escaped.
        scheme, user, host, port_text, param_text = fast.groups()
        port = int(port_text) if port_text is not None else None
        if port is None or port <= 65535:
            return SipUri(scheme=scheme, user=user, host=host, port=port,
                          params=split_plain_params(param_text) if param_text else ())
    text = text.strip(LWS)
    scheme, colon, rest = text.partition(":")
    if not colon or _SCHEME_RE.fullmatch(scheme) is None:
        raise RemoteProtocolError(f"bad URI {text!r}")
    scheme = scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise RemoteProtocolError(f"unsupported URI scheme {scheme!r}", status=416)
    if _URI_CHARS_RE.fullmatch(rest) is None:
        raise RemoteProtocolError(f"bad URI {text!r}")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if _TEL_NUMBER_RE.fullmatch(number) is None:
            raise RemoteProtocolError(f"bad tel URI {text!r}")
        return TelUri(number=number, params=_parse_uri_params(params))
    # The user part may hold ";" and "?" (user-unreserved) but never "@".
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_text, colon, password_text = userinfo.partition(":")
        user = _unescape(user_text)
        if colon:
            password = _unescape(password_text)
    rest, question, header_text = rest.partition("?")
    hostport, _, param_text = rest.partition(";")
    if not hostport:
        raise RemoteProtocolError(f"URI without host {text!r}")
    host, port = split_hostport(hostport)
    headers: list[tuple[str, str]] = []
    if question:
        for item in header_text.split("&"):
            if not item:
                continue
            name, _, value = item.partition("=")
            if not name:
                raise RemoteProtocolError(f"bad URI header {item!r}")
            headers.append((_unescape(name), _unescape(value)))
    return SipUri(
        scheme=scheme,
        user=user,
        password=password,
        host=host,
        port=port,
        params=_parse_uri_params(param_text),
        headers=tuple(headers),
    )


@frozen(kw_only=True)
class NameAddr:
    """A From/To/Contact/Route value: display name, URI, header parameters.

    ``display`` is unquoted (None when absent).  ``params`` are the header
    parameters (``tag``, ``expires``, ``q``, ...) with values as written
    (quoted values keep their quotes).  ``tag`` is the ``tag`` parameter.
    """

    display: str | None = None
    uri: SipUri | TelUri
    params: Params = ()
    tag: str | None = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "tag", find_param(self.params, "tag"))

    def param(self, name: str) -> str | None:
        """The value of header parameter ``name`` (case-insensitive)."""
        return find_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def __str__(self) -> str:
        display = "" if self.display is None else quote(self.display) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``[display] <uri> *(;param)`` or ``addr-spec *(;param)`` (RFC 3261 §20.10)."""
    known = _NAME_ADDRS.get(text)
    if known is not None:
        return known
    name_addr = _parse_name_addr(text)
    if len(text) <= _CACHEABLE:
        if len(_NAME_ADDRS) >= _CACHE_LIMIT:
            _NAME_ADDRS.clear()
        _NAME_ADDRS[text] = name_addr
    return name_addr


def _parse_name_addr(text: str) -> NameAddr:
    fast = _PLAIN_NAME_ADDR_RE.fullmatch(text)
    if fast is not None:
        # The usual form: an optional quoted display name without escapes,
        # <uri>, plain parameters.
        display, uri_text, param_text = fast.groups()
        return NameAddr(display=display, uri=parse_uri(uri_text), params=split_plain_params(param_text))
    text = text.strip(LWS)
    display: str | None = None
    if text.startswith('"'):
        end = end_of_quoted(text, 0)
        display = unquote(text[:end])
        rest = text[end:].lstrip(LWS)
        if not rest.startswith("<"):
            raise RemoteProtocolError(f"bad name-addr {text!r}")
    else:
        rest = text
        angle = text.find("<")
        if angle > 0:
            display = text[:angle].strip(LWS)
            if '"' in display or ">" in display:
                raise RemoteProtocolError(f"bad display name {display!r}")
            # *(token LWS): keep the words, one space apart.
            display = " ".join(_LWS_RE.split(display)) or None
            rest = text[angle:]
    if rest.startswith("<"):
        close = rest.find(">")
        if close < 0:
            raise RemoteProtocolError(f"unterminated <uri> in {text!r}")
        uri = parse_uri(rest[1:close])
        after = rest[close + 1 :].strip(LWS)
    else:
        if any(c in rest for c in '<>"'):
            raise RemoteProtocolError(f"bad addr-spec {text!r}")
        uri_text, semi, after = rest.partition(";")
        uri = parse_uri(uri_text)
        after = semi + after
    if after and not after.startswith(";"):
        raise RemoteProtocolError(f"junk after URI in {text!r}")
    return NameAddr(display=display, uri=uri, params=parse_params(after[1:]) if after else ())


__all__ = [
    "NameAddr",
    "SipUri",
    "TelUri",
    "parse_name_addr",
    "parse_uri",
    "SUPPORTED_SCHEMES",
]

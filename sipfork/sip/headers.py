"""Typed views of the headers a proxy reads: Via, CSeq, Contact.

Each is parsed only when first read (the message caches the result).
Grammar: RFC 3261 §25.1; Via §20.42 with RFC 3581 ``rport``; CSeq §20.16;
Contact §20.10.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from attrs import field, frozen

from sipfork.sip.errors import RemoteProtocolError
from sipfork.sip.grammar import (
    LWS,
    Params,
    find_param,
    format_host,
    format_params,
    is_digits,
    is_hostname,
    is_token,
    parse_params,
    split_hostport,
    split_outside,
)
from sipfork.sip.uri import NameAddr, parse_name_addr

if TYPE_CHECKING:
    from sipfork.sip.message import Message

# sent-protocol = protocol-name SLASH protocol-version SLASH transport, then LWS sent-by.
_SENT_PROTOCOL_RE = re.compile(
    r"[ \t\r\n]*([A-Za-z0-9.!%*_+`'~-]+)[ \t\r\n]*/[ \t\r\n]*([A-Za-z0-9.!%*_+`'~-]+)"
    r"[ \t\r\n]*/[ \t\r\n]*([A-Za-z0-9.!%*_+`'~-]+)[ \t\r\n]+"
)
# What a parameter value of the usual Via value does not hold (a ";" ends it).
_NOT_PLAIN = frozenset(' \t\r\n"<>')
_NO_VALUE = object()  # a parameter present without "=value"
# CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16), LWS being ASCII white space only.
_CSEQ_RE = re.compile(r"[ \t\r\n]*(\S+?)[ \t\r\n]+(\S+?)[ \t\r\n]*")


@frozen(kw_only=True)
class Via:
    """One Via value (RFC 3261 §20.42, §18.2.2; RFC 3581).

    ``branch``, ``received``, ``rport`` and ``has_rport`` are read from
    ``params`` when the value is built; ``rport`` is None when the parameter is
    absent or has no value (the client asks for it: ``has_rport`` is then True).
    """

    transport: str = "UDP"
    host: str
    port: int | None = None
    params: Params = ()
    branch: str | None = field(init=False, eq=False, repr=False)
    received: str | None = field(init=False, eq=False, repr=False)
    rport: int | None = field(init=False, eq=False, repr=False)
    has_rport: bool = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # One pass over the parameters (the first of each name counts, as
        # find_param would say): a Via is read on every message.
        branch = received = rport_text = None
        has_rport = False
        for key, value in self.params:
            lowered = key.lower()
            if lowered == "branch":
                if branch is None:
                    branch = value if value is not None else _NO_VALUE
            elif lowered == "received":
                if received is None:
                    received = value if value is not None else _NO_VALUE
            elif lowered == "rport" and not has_rport:
                has_rport = True
                rport_text = value
        setter = object.__setattr__
        setter(self, "branch", None if branch is _NO_VALUE else branch)
        setter(self, "received", None if received is _NO_VALUE else received)
        setter(self, "has_rport", has_rport)
        setter(self, "rport", int(rport_text) if rport_text is not None and is_digits(rport_text) else None)

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """``(host, port)`` as the sender wrote them."""
        return self.host, self.port

    def response_address(self) -> tuple[str, int]:
        """Where a response to this Via goes (RFC 3261 §18.2.2, RFC 3581 §4).

        ``received`` overrides the host and ``rport`` the port; without a port
        the default is 5060 (SIP over UDP/TCP).  A bracketed IPv6 ``received``
        (not RFC 3261 grammar, but sent by some stacks) loses its brackets.
        """
        host = self.received.strip("[]") if self.received else self.host
        port = self.rport if self.rport is not None else self.port
        return host, port if port is not None else 5060

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {format_host(self.host)}{port}{format_params(self.params)}"


def parse_via(text: str) -> Via:
    """Parse one Via value (not a comma list: split it with ``header_values``)."""
    known = _VIAS.get(text)
    if known is not None:
        return known  # immutable: the responses of one branch share their top Via
    via = _parse_via(text)
    if len(text) <= 256:
        if len(_VIAS) >= 4096:
            _VIAS.clear()
        _VIAS[text] = via
    return via


# Parsed Via values by text (bounded): a branch's 180, 200 or 487, and the
# 200 to its CANCEL, all carry the same top Via.
_VIAS: dict[str, Via] = {}


def _plain_via_parts(text: str) -> tuple[str, str, int | None, Params] | None:
    """The usual Via value, "SIP/2.0/" transport, one space, a host name or
    IPv4 address, an optional port and parameters that are tokens with
    plain values (no white space, quotes, <> or stray ";"), as (transport,
    host, port, params); None for anything else, which takes the general
    path. Every request brings a Via not seen before (its branch is new)."""
    if not text.startswith("SIP/2.0/"):
        return None
    transport, space, rest = text[8:].partition(" ")
    if not space or not transport.isascii() or not transport.isalpha():
        return None
    sent_by, semi, param_text = rest.partition(";")
    host, colon, port_text = sent_by.partition(":")
    if not is_hostname(host):
        return None
    port = None
    if colon:
        if len(port_text) > 5 or not is_digits(port_text):
            return None
        port = int(port_text)
    if not semi:
        return transport, host, port, ()
    params: list[tuple[str, str | None]] = []
    for part in param_text.split(";"):
        name, eq, value = part.partition("=")
        if not is_token(name):
            return None
        if not eq:
            params.append((name, None))
        elif value and _NOT_PLAIN.isdisjoint(value):
            params.append((name, value))
        else:
            return None
    return transport, host, port, tuple(params)


def _parse_via(text: str) -> Via:
    fast = _plain_via_parts(text)
    if fast is not None:
        # The usual form ("SIP/2.0/UDP host:port;name=value;flag"): what
        # the general path below checks, in one pass.
        transport, host, port, params = fast
        if port is None or port <= 65535:
            return _plain_via(transport.upper(), host, port, params, text)
    match = _SENT_PROTOCOL_RE.match(text)
    if match is None:
        raise RemoteProtocolError(f"bad Via {text!r}")
    name, version, transport = match.groups()
    if name.upper() != "SIP" or version != "2.0":
        raise RemoteProtocolError(f"bad Via protocol {text!r}")
    rest = text[match.end() :]
    sent_by, semi, param_text = rest.partition(";")
    host, port = split_hostport(sent_by)
    params = parse_params(param_text) if semi else ()
    _check_via_params(params, text)
    return Via(transport=transport.upper(), host=host, port=port, params=params)


def _plain_via(transport: str, host: str, port: int | None, params: Params, text: str) -> Via:
    """``Via(...)`` for parse_via's fast path: the checks of
    :func:`_check_via_params` and the values of ``Via.__attrs_post_init__``
    in one pass over the parameters, and no keyword arguments to sort out
    (a Via is parsed for every message)."""
    branch = received = rport_text = None
    seen_branch = seen_received = has_rport = False
    for key, value in params:
        lowered = key.lower()
        if lowered == "branch":
            if not value:
                raise RemoteProtocolError(f"empty {key} in Via {text!r}")
            if not seen_branch:
                seen_branch, branch = True, value
        elif lowered == "received":
            if not value:
                raise RemoteProtocolError(f"empty {key} in Via {text!r}")
            if not seen_received:
                seen_received, received = True, value
        elif lowered == "rport":
            if value is not None and (not is_digits(value) or int(value) > 65535):
                raise RemoteProtocolError(f"bad rport in Via {text!r}")
            if not has_rport:
                has_rport, rport_text = True, value
    via = object.__new__(Via)
    setter = object.__setattr__
    setter(via, "transport", transport)
    setter(via, "host", host)
    setter(via, "port", port)
    setter(via, "params", params)
    setter(via, "branch", branch)
    setter(via, "received", received)
    setter(via, "has_rport", has_rport)
    setter(via, "rport", int(rport_text) if rport_text is not None else None)
    return via


def _check_via_params(params: Params, text: str) -> None:
    for key, value in params:
        lowered = key.lower()
        if lowered == "rport" and value is not None and (not is_digits(value) or int(value) > 65535):
            raise RemoteProtocolError(f"bad rport in Via {text!r}")
        if lowered in ("branch", "received") and not value:
            raise RemoteProtocolError(f"empty {key} in Via {text!r}")


def set_via_received(value: str, *, received: str | None, rport: int | None) -> str:
    """Set ``received=`` and ``rport=`` on one Via value's text (RFC 3581 §4).

    Existing parameters are replaced in place, missing ones appended; the
    rest of the text is kept byte for byte, so edits and the builder agree.
    """
    if received is None and rport is None:
        return value
    stripped = value.rstrip(LWS)
    trailing = value[len(stripped) :]
    head, semi, param_text = stripped.partition(";")
    parts = split_outside(param_text, ";") if semi else []
    wanted = {"received": received, "rport": None if rport is None else str(rport)}
    for index, part in enumerate(parts):
        name = part.partition("=")[0].strip(LWS).lower()
        if name in wanted and wanted[name] is not None:
            parts[index] = f"{name}={wanted[name]}"
            wanted[name] = None
    parts.extend(f"{name}={new}" for name, new in wanted.items() if new is not None)
    return head + "".join(";" + part for part in parts) + trailing


@frozen(kw_only=True)
class CSeq:
    """The CSeq header (RFC 3261 §20.16): sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(text: str) -> CSeq:
    """``1*DIGIT LWS Method``; the number must be below 2**31 (RFC 3261 §8.1.1.5)."""
    known = _CSEQS.get(text)
    if known is not None:
        return known  # immutable, so one object serves every message that has this text
    cseq = _parse_cseq(text)
    if len(text) <= 64:
        if len(_CSEQS) >= _CSEQS_LIMIT:
            _CSEQS.clear()
        _CSEQS[text] = cseq
    return cseq


# CSeq values by text: few differ ("1 INVITE", "2 BYE", ...) and every message has one.
_CSEQS: dict[str, CSeq] = {}
_CSEQS_LIMIT = 4096


def _parse_cseq(text: str) -> CSeq:
    match = _CSEQ_RE.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(f"bad CSeq {text!r}")
    number, method = match.groups()
    if not is_digits(number) or int(number) >= 2**31:
        raise RemoteProtocolError(f"bad CSeq number {text!r}")
    if not is_token(method):
        raise RemoteProtocolError(f"bad CSeq method {text!r}")
    return CSeq(number=int(number), method=method)


def parse_name_addrs(values: list[str]) -> list[NameAddr]:
    """Parse each value of a Route/Record-Route/Contact-like list."""
    return [parse_name_addr(value) for value in values]


def parse_contacts(msg: Message) -> list[NameAddr] | Literal["*"]:
    """The Contact values of ``msg`` (RFC 3261 §20.10, §10.2.2).

    ``"*"`` (remove all bindings) must stand alone; ``expires`` and ``q`` are
    header parameters of each NameAddr.
    """
    values = msg.header_values("contact")
    if "*" in values:
        if len(values) != 1:
            raise RemoteProtocolError("Contact: * mixed with other contacts")
        return "*"
    return parse_name_addrs(values)


def parse_expires(text: str) -> int:
    """Delta-seconds (RFC 3261 §20.19); huge values are capped at 2**32-1 (§25.1)."""
    text = text.strip(LWS)
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise RemoteProtocolError(f"bad delta-seconds {text!r}")
    return min(int(text), 2**32 - 1)

"""Messages the proxy originates, fully serialised (RFC 3261 §7, §8.2.6, §9.1, §17.1.1.3).

Forwarded messages are not built here: ``edits.py`` edits the received
bytes instead.  Header text copied from a received message is used exactly
as it was read (unfolded), so a response to a request whose From or To is
malformed can still be built (a 400 needs them copied, not understood).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from sipfork.sip.errors import LocalProtocolError, RemoteProtocolError
from sipfork.sip.headers import CSeq, Via, set_via_received
from sipfork.sip.message import Request, Response
from sipfork.sip.status import reason_for
from sipfork.sip.uri import NameAddr, SipUri, TelUri

CRLF = "\r\n"
# ";tag=" among the header parameters: after the closing ">" when there is one.
_TAG_RE = re.compile(r";[ \t]*tag[ \t]*=", re.IGNORECASE)


def _encode(lines: list[str], body: bytes) -> bytes:
    # surrogateescape gives back exactly the bytes a received value was read from.
    return (CRLF.join(lines) + CRLF + CRLF).encode("utf-8", "surrogateescape") + body


def _checked(name: str, value: str) -> str:
    """``Name: value`` after refusing CR/LF, which would inject header lines."""
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
        raise LocalProtocolError(f"header {name!r} would break the message")
    return f"{name}: {value}"


def _required(message: Request | Response, name: str) -> str:
    value = message.header(name)
    if value is None:
        raise RemoteProtocolError(f"cannot answer without {name}")
    return value


def has_tag(name_addr_text: str) -> bool:
    """Whether a From/To value carries a ``tag`` parameter, read textually."""
    close = name_addr_text.rfind(">")
    return _TAG_RE.search(name_addr_text, close + 1 if close >= 0 else 0) is not None


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    received: str | None = None,
    rport: int | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """A response to ``request`` (RFC 3261 §8.2.6.2, §16.7 for a proxy's own responses).

    Copies every Via in order (``received``/``rport`` set on the top one,
    RFC 3581 §4), From, To (with ``;tag=to_tag`` added when To has none and
    the status is above 100), Call-ID and CSeq; then ``headers``; then
    Content-Length.  A 100 copies Timestamp (§8.2.6.1).
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range")
    vias = request.header_values("via")
    if not vias:
        raise RemoteProtocolError("cannot answer without Via")
    vias[0] = set_via_received(vias[0], received=received, rport=rport)
    to = _required(request, "to")
    if to_tag is not None and status > 100 and not has_tag(to):
        to = f"{to};tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason if reason is not None else reason_for(status)}"]
    lines.extend(f"Via: {via}" for via in vias)
    lines.append(f"From: {_required(request, 'from')}")
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {_required(request, 'call-id')}")
    lines.append(f"CSeq: {_required(request, 'cseq')}")
    if status == 100:
        timestamp = request.header("timestamp")
        if timestamp is not None:
            lines.append(f"Timestamp: {timestamp}")
    lines.extend(_checked(name, value) for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    return _encode(lines, body)


def _top_via_text(request: Request) -> str:
    vias = request.header_values("via")
    if not vias:
        raise RemoteProtocolError("request without Via")
    return vias[0]


class InviteLines(NamedTuple):
    """What a CANCEL (RFC 3261 §9.1) and the ACK for a non-2xx (§17.1.1.3)
    copy from the INVITE they follow: its Request-URI, top Via value, Route
    lines, From, To, Call-ID and CSeq number, as text.

    A proxy that built the INVITE knows them without parsing it again
    (``edits.ForwardTemplate.invite_lines``); :func:`invite_lines` reads
    them from a parsed request."""

    uri: str
    via: str
    routes: tuple[str, ...]
    from_: str
    to: str
    call_id: str
    cseq: int


def invite_lines(invite: Request) -> InviteLines:
    """The lines of ``invite`` a CANCEL or ACK copies."""
    return InviteLines(uri=invite.uri, via=_top_via_text(invite), routes=tuple(invite.header_lines("route")),
                       from_=_required(invite, "from"), to=_required(invite, "to"),
                       call_id=_required(invite, "call-id"), cseq=invite.cseq.number)


def build_cancel(invite: Request | InviteLines, *, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """CANCEL for a request we sent (RFC 3261 §9.1).

    Same Request-URI, Call-ID, From, To, CSeq number; only the top Via (so
    the CANCEL matches the INVITE's client transaction); the same Route set.
    """
    lines = invite if isinstance(invite, InviteLines) else invite_lines(invite)
    out = [f"CANCEL {lines.uri} SIP/2.0", f"Via: {lines.via}", "Max-Forwards: 70"]
    out.extend(f"Route: {route}" for route in lines.routes)
    out.append(f"From: {lines.from_}")
    out.append(f"To: {lines.to}")
    out.append(f"Call-ID: {lines.call_id}")
    out.append(f"CSeq: {lines.cseq} CANCEL")
    out.extend(_checked(name, value) for name, value in headers)
    out.append("Content-Length: 0")
    return _encode(out, b"")


def build_ack(invite: Request | InviteLines, response: Response) -> bytes:
    """ACK for a non-2xx final response to our INVITE (RFC 3261 §17.1.1.3).

    Request-URI, Call-ID, From, top Via and Route from the INVITE; To (with
    the tag the response added) from the response; CSeq number with ACK.
    """
    if response.status < 300:
        raise LocalProtocolError("the ACK for a 2xx is end to end, not the transaction's")
    lines = invite if isinstance(invite, InviteLines) else invite_lines(invite)
    out = [f"ACK {lines.uri} SIP/2.0", f"Via: {lines.via}", "Max-Forwards: 70"]
    out.extend(f"Route: {route}" for route in lines.routes)
    out.append(f"From: {lines.from_}")
    out.append(f"To: {_required(response, 'to')}")
    out.append(f"Call-ID: {lines.call_id}")
    out.append(f"CSeq: {lines.cseq} ACK")
    out.append("Content-Length: 0")
    return _encode(out, b"")


def build_request(
    method: str,
    uri: str | SipUri | TelUri,
    *,
    via: str | Via,
    from_: str | NameAddr,
    to: str | NameAddr,
    call_id: str,
    cseq: int | CSeq,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    max_forwards: int = 70,
) -> bytes:
    """A new request (RFC 3261 §8.1.1): the mandatory headers, ``headers``, Content-Length.

    ``cseq`` is the number (the method is ``method``) or a whole CSeq.
    """
    cseq_text = f"{cseq} {method}" if isinstance(cseq, int) else str(cseq)
    lines = [
        f"{method} {uri} SIP/2.0",
        _checked("Via", str(via)),
        f"Max-Forwards: {max_forwards}",
        _checked("From", str(from_)),
        _checked("To", str(to)),
        _checked("Call-ID", call_id),
        _checked("CSeq", cseq_text),
    ]
    lines.extend(_checked(name, value) for name, value in headers)
    lines.append(f"Content-Length: {len(body)}")
    return _encode(lines, body)

"""What a proxied request keeps of the caller's side (RFC 3261 §16.6), and
what the core reads of the caller's request: its RFC 3581 marks, its caller."""

from __future__ import annotations

from attrs import define

from sipfork.core.transactions import ServerTransaction
from sipfork.sip.headers import Via
from sipfork.sip.message import Request
from sipfork.sip.uri import TelUri


@define(slots=True, kw_only=True, eq=False)
class Upstream:
    """The caller's leg of a proxied request and how its branches are built."""

    transaction: ServerTransaction
    source: tuple[str, int]
    transport: str
    to_tag: str
    max_forwards: int  # already decremented: the value every branch carries
    pop_routes: int  # how many of the request's Route values were ours
    record_route: bool  # a dialog-creating request: insert our Record-Route
    received: str | None  # RFC 3581 values for the caller's Via
    rport: int | None
    max_breadth: int | None  # RFC 5393 value each branch carries, None: leave as is
    drop_headers: tuple[str, ...] = ()  # credentials for our realm, consumed here
    caller: str = ""  # for the call log line
    cseq_shift: int = 0  # in a dialog whose gateway leg answered a challenge


def via_marks(via: Via, source: tuple[str, int]) -> tuple[str | None, int | None]:
    """RFC 3581 / RFC 3261 §18.2.1: received when the Via's host is not the
    source address, rport when the client asked for it."""
    received = source[0] if via.host != source[0] else None
    rport = source[1] if via.has_rport else None
    if rport is not None and received is None:
        received = source[0]
    return received, rport


def caller_of(request: Request) -> str | None:
    """The caller's number or user for filters; None when anonymous."""
    if any(value.strip().lower() in ("id", "user") for value in request.header_values("Privacy")):
        return None
    uri = request.from_.uri
    if isinstance(uri, TelUri):
        return uri.number
    if uri.host.endswith("anonymous.invalid") or (uri.user or "").lower() == "anonymous" or not uri.user:
        return None
    return uri.user
